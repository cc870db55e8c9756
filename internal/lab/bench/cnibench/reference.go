package cnibench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// RefDir is where Debian's containernetworking-plugins puts the reference
// plugins.
const RefDir = "/usr/lib/cni"

// EnsureReference makes sure the reference bridge and host-local plugins
// are in dir, installing Debian's containernetworking-plugins (as
// hack/install-deps.sh does) when they are missing and dir is Debian's.
func EnsureReference(dir string, log io.Writer) error {
	if haveReference(dir) {
		return nil
	}
	if dir != RefDir {
		return fmt.Errorf("the reference plugins bridge and host-local are not in %s", dir)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("the reference plugins are not in %s and there is no apt-get to install containernetworking-plugins: install them, or pass -ref-dir", dir)
	}
	fmt.Fprintln(log, "installing Debian's containernetworking-plugins for the reference bridge and host-local plugins")
	for _, args := range [][]string{
		{"update", "-qq"},
		{"install", "-y", "-qq", "--no-install-recommends", "containernetworking-plugins"},
	} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %v: %w", args, err)
		}
	}
	if !haveReference(dir) {
		return fmt.Errorf("containernetworking-plugins installed, yet bridge and host-local are not in %s", dir)
	}
	return nil
}

func haveReference(dir string) bool {
	for _, p := range []string{"bridge", "host-local"} {
		if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
