// Package controlplane runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager) on loopback or inside a network
// namespace, for Weft's tests and its lab. It owns the control plane's
// binaries (built once per machine by hack/kube/build.sh), its PKI, its
// processes and its files, and removes all of them on Stop. It never
// touches the network beyond the sockets its processes listen on.
package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Versions of the control plane that hack/kube/build.sh builds; they key
// the cache directory.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// Binary names inside the cache directory.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	Kubectl               = "kubectl"
	Etcd                  = "etcd"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// CacheDir is where the binaries of this version live once built.
func CacheDir() string {
	root := os.Getenv("WEFT_KUBE_CACHE")
	if root == "" {
		root = "/var/cache/weft"
	}
	return filepath.Join(root, "kube-"+KubeVersion)
}

// Binaries returns the directory holding the control plane's binaries,
// building them first when the cache lacks them. The first build on a
// fresh machine takes about 12 minutes; build.sh serialises concurrent
// callers with a lock, so parallel test processes build once.
func Binaries() (string, error) {
	binOnce.Do(func() { binDir, binErr = binaries() })
	return binDir, binErr
}

func binaries() (string, error) {
	dir := CacheDir()
	if cacheComplete(dir) {
		return dir, nil
	}
	script, err := buildScript()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "controlplane: the Kubernetes %s control plane is not in %s; building it with %s (the first build takes about 12 minutes)\n",
		KubeVersion, dir, script)
	cmd := exec.Command(script)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the Kubernetes control plane with %s: %w", script, err)
	}
	if !cacheComplete(dir) {
		return "", fmt.Errorf("%s finished but %s is incomplete", script, dir)
	}
	return dir, nil
}

func cacheComplete(dir string) bool {
	for _, b := range []string{KubeAPIServer, KubeControllerManager, Kubectl, Etcd} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	return err == nil && strings.TrimSpace(string(v)) == KubeVersion+" etcd-"+EtcdVersion
}

// buildScript finds hack/kube/build.sh in Weft's source tree.
func buildScript() (string, error) {
	s, err := FindScript(filepath.Join("hack", "kube", "build.sh"))
	if err != nil {
		return "", fmt.Errorf("the Kubernetes control plane is not built in %s, and %w", CacheDir(), err)
	}
	return s, nil
}

// FindScript finds rel (a path like hack/kube/build.sh) in Weft's source
// tree: the one this package was compiled from (tests), else the tree
// around the running binary (bin/weft-lab) or the working directory
// (`make lab`); a -trimpath build knows no source paths.
func FindScript(rel string) (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", "..", rel))
	}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", rel))
	}
	if wd, err := os.Getwd(); err == nil {
		candidates = append(candidates, filepath.Join(wd, rel))
	}
	for _, s := range candidates {
		if _, err := os.Stat(s); err == nil {
			return filepath.Clean(s), nil
		}
	}
	return "", fmt.Errorf("%s is not found near %v: run it from Weft's source tree", rel, candidates)
}
