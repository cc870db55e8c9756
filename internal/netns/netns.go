// Package netns creates, enters and removes named network namespaces, the
// same way `ip netns` does (a bind mount under /run/netns), so that an
// operator can step into anything Weft's lab or tests made with
// `ip netns exec NAME`. It owns nothing else: it never changes what is
// inside a namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces live, shared with iproute2.
const Dir = "/run/netns"

// Path is the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

var dirOnce sync.Once
var dirErr error

// ensureDir makes Dir a shared mount point, as iproute2 does, so that a
// namespace mounted there is visible in every mount namespace (including
// the ones `ip netns exec` makes).
func ensureDir() error {
	dirOnce.Do(func() {
		if err := os.MkdirAll(Dir, 0o755); err != nil {
			dirErr = err
			return
		}
		if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
			return
		}
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			dirErr = fmt.Errorf("bind %s: %w", Dir, err)
			return
		}
		if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
			dirErr = fmt.Errorf("make %s shared: %w", Dir, err)
		}
	})
	return dirErr
}

// Create makes a new, empty network namespace named name and returns it
// open. Loopback is brought up. It fails if the name is taken.
func Create(name string) (ns.NetNS, error) {
	if name == "" || strings.ContainsAny(name, "/ ") || len(name) > 200 {
		return nil, fmt.Errorf("invalid namespace name %q", name)
	}
	if err := ensureDir(); err != nil {
		return nil, err
	}
	path := Path(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()

	// The new namespace is made on a thread of its own, which is never
	// returned to the Go scheduler: it dies with the goroutine, so no other
	// goroutine can run in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	n, err := ns.GetNS(path)
	if err != nil {
		Delete(name)
		return nil, err
	}
	if err := n.Do(func(ns.NetNS) error { return linkUp("lo") }); err != nil {
		n.Close()
		Delete(name)
		return nil, fmt.Errorf("namespace %s: loopback up: %w", name, err)
	}
	return n, nil
}

// Delete removes the named namespace. Interfaces inside it go with it once
// no process holds it. A namespace that does not exist is not an error.
func Delete(name string) error {
	path := Path(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// List returns the names of the named namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Exists reports whether the named namespace is mounted.
func Exists(name string) bool {
	n, err := ns.GetNS(Path(name))
	if err != nil {
		return false
	}
	n.Close()
	return true
}

// Start starts cmd inside the network namespace at nsPath.
// The child inherits the network namespace of the thread that forks it,
// which ns.Do has moved there for the duration of the call.
func Start(nsPath string, cmd *exec.Cmd) error {
	target, err := ns.GetNS(nsPath)
	if err != nil {
		return err
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error { return cmd.Start() })
}
