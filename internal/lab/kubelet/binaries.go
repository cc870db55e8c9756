package kubelet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/lab/controlplane"
)

// Binaries are the programs a kubelet node runs, built once per
// machine into version-keyed cache directories by Weft's scripts.
type Binaries struct {
	Kubelet, Scheduler, Containerd, Shim, Ctr, Runc string
}

// FindBinaries builds (once per machine) and finds kubelet,
// kube-scheduler and containerd, and Debian's runc.
func FindBinaries(logf func(string, ...any)) (*Binaries, error) {
	kube, err := runCacheScript(filepath.Join("hack", "kube", "build-node.sh"), logf)
	if err != nil {
		return nil, err
	}
	ctrd, err := runCacheScript(filepath.Join("hack", "containerd", "build.sh"), logf)
	if err != nil {
		return nil, err
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return nil, fmt.Errorf("runc not found (Debian's runc; hack/install-deps.sh installs it): %w", err)
	}
	return &Binaries{
		Kubelet: filepath.Join(kube, "kubelet"), Scheduler: filepath.Join(kube, "kube-scheduler"),
		Containerd: filepath.Join(ctrd, "containerd"), Shim: filepath.Join(ctrd, "containerd-shim-runc-v2"),
		Ctr: filepath.Join(ctrd, "ctr"), Runc: runc,
	}, nil
}

// runCacheScript runs one of Weft's build-and-cache scripts (which does
// nothing when its cache is complete) and returns the directory it prints.
func runCacheScript(rel string, logf func(string, ...any)) (string, error) {
	script, err := controlplane.FindScript(rel)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr // the first build takes minutes: show its progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	dir := lines[len(lines)-1]
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s printed %q, not a directory", script, dir)
	}
	return dir, nil
}
