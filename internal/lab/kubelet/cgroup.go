package kubelet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoot is where cgroup v1 hierarchies are mounted. Every kubelet
// node gets a cgroup parent of its own, named like its network namespace
// (<lab>-<node>), in every hierarchy: kubelet requires it to exist, and
// two kubelets sharing one would kill each other's pods.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupHierarchies are the mounted hierarchies (cpu and cpuacct are
// often links to one), with the cgroup2 of a hybrid setup, where runc
// also makes a cgroup for every container.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		return nil, err
	}
	var hs []string
	for _, e := range entries {
		if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			continue
		}
		hs = append(hs, filepath.Join(cgroupRoot, e.Name()))
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("no cgroup hierarchy under %s", cgroupRoot)
	}
	return hs, nil
}

// createCgroups makes the cgroup name in every hierarchy; a new cpuset
// has no CPUs or memory nodes until given its parent's.
func createCgroups(name string) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return fmt.Errorf("cgroup %s: %w", filepath.Join(dir, f), err)
			}
		}
	}
	return nil
}

// cgroupDirs lists the cgroup name and everything below it, in every
// hierarchy, deepest first.
func cgroupDirs(name string) ([]string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range hs {
		filepath.WalkDir(filepath.Join(h, name), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// KillCgroups kills every process in the cgroup name (and below) until
// none is left, or fails after 10 s.
func KillCgroups(name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		dirs, err := cgroupDirs(name)
		if err != nil {
			return err
		}
		left := 0
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					syscall.Kill(pid, syscall.SIGKILL)
					left++
				}
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %d processes do not die", name, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RemoveCgroups removes the cgroup name and everything below it.
func RemoveCgroups(name string) error {
	dirs, err := cgroupDirs(name)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// LabCgroups are the names of the cgroups kubelet nodes of lab made.
func LabCgroups(lab string) []string {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, h := range hs {
		m, _ := filepath.Glob(filepath.Join(h, lab+"-*"))
		for _, d := range m {
			seen[filepath.Base(d)] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
