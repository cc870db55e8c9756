// Package uninstall removes every trace of Weft from a node: the pod
// bridge and the pods' host-side veths, the VXLAN device (its neighbours
// and FDB entries go with it), every route carrying Weft's route protocol,
// the nftables table, the CNI network config and plugin binary, and the
// data and run directories. It recognises Weft's objects only by the names
// in package names, never touches anything else, and can run any number of
// times.
package uninstall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/names"
	"golang.org/x/sys/unix"
)

// Options says where Weft's files are on this node.
type Options struct {
	ConfDir string // CNI network configs (names.CNIConfDir)
	BinDir  string // CNI plugin binaries (names.CNIBinDir)
	DataDir string // names.DataDir
	RunDir  string // names.RunDir
}

// Defaults are the paths Weft uses on a node.
func Defaults() Options {
	return Options{ConfDir: names.CNIConfDir, BinDir: names.CNIBinDir, DataDir: names.DataDir, RunDir: names.RunDir}
}

// Run removes everything of Weft's in the calling thread's network
// namespace and in the directories of o. It carries on past a failure so
// that one stuck object does not keep the rest in place, and returns what
// it removed and every failure.
func Run(o Options) (removed []string, err error) {
	var errs []error
	step := func(what []string, err error) {
		removed = append(removed, what...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	step(removeLinks())
	step(removeRoutes())
	step(removeTable())
	step(removeFiles(o))
	return removed, errors.Join(errs...)
}

// removeLinks deletes the pods' host-side veths first (those on the
// bridge or named with Weft's veth prefix), then the bridge and the VXLAN
// device. Deleting a veth end deletes its pod-side peer too.
func removeLinks() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	brIndex := -1
	for _, l := range links {
		if l.Attrs().Name == names.Bridge {
			brIndex = l.Attrs().Index
		}
	}
	var veths, devices []netlink.Link
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		switch {
		case a.Name == names.Bridge && l.Type() != "bridge", a.Name == names.VXLANDevice && l.Type() != "vxlan":
			// Weft's name on something Weft does not make: not Weft's.
			errs = append(errs, fmt.Errorf("%s is a %s, not Weft's; left alone", a.Name, l.Type()))
		case a.Name == names.Bridge || a.Name == names.VXLANDevice:
			devices = append(devices, l)
		case l.Type() == "veth" && (strings.HasPrefix(a.Name, names.VethPrefix) || (brIndex > 0 && a.MasterIndex == brIndex)):
			veths = append(veths, l)
		}
	}
	var removed []string
	for _, l := range append(veths, devices...) {
		if err := netlink.LinkDel(l); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", l.Type(), l.Attrs().Name, err))
			continue
		}
		removed = append(removed, fmt.Sprintf("%s %s", l.Type(), l.Attrs().Name))
	}
	return removed, errors.Join(errs...)
}

// removeRoutes deletes the routes of every table and family that carry
// Weft's route protocol; routes through the deleted devices are already
// gone with them.
func removeRoutes() ([]string, error) {
	filter := &netlink.Route{Protocol: names.RouteProtocol, Table: unix.RT_TABLE_UNSPEC}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes with protocol %d: %w", names.RouteProtocol, err)
	}
	var removed []string
	var errs []error
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
			continue
		}
		removed = append(removed, fmt.Sprintf("route %s table %d", dst(r), r.Table))
	}
	return removed, errors.Join(errs...)
}

func dst(r netlink.Route) string {
	if r.Dst == nil {
		return "default"
	}
	return r.Dst.String()
}

func removeTable() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name != names.NFTable {
			continue
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil && !isGone(err) {
			return nil, fmt.Errorf("delete nftables table inet %s: %w", names.NFTable, err)
		}
		return []string{"nftables table inet " + names.NFTable}, nil
	}
	return nil, nil
}

func removeFiles(o Options) ([]string, error) {
	var removed []string
	var errs []error
	rm := func(path string, all bool) {
		check := safePath
		if all {
			check = func(p string) error { return safeTree(p, o.ConfDir, o.BinDir) }
		}
		if err := check(path); err != nil {
			errs = append(errs, err)
			return
		}
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return
		}
		var err error
		if all {
			err = os.RemoveAll(path)
		} else {
			err = os.Remove(path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
			return
		}
		removed = append(removed, path)
	}
	rm(filepath.Join(o.ConfDir, names.ConfListName), false)
	rm(filepath.Join(o.BinDir, names.PluginType), false)
	rm(o.DataDir, true)
	rm(o.RunDir, true)
	return removed, errors.Join(errs...)
}

// safePath refuses paths that would make a removal a disaster (a typo such
// as --data-dir / or an empty flag).
func safePath(p string) error {
	clean := filepath.Clean(p)
	if p == "" || !filepath.IsAbs(p) || clean == "/" || isSystemDir(clean) {
		return fmt.Errorf("refusing to remove %q: not a Weft path", p)
	}
	return nil
}

// safeTree is safePath for a directory removed with everything in it. A
// directory right under a system directory is taken for Weft's only when
// its name says so (/var/lib is not, /run/weft is), and a directory that
// holds the CNI config or plugin directory would take other networks'
// files with it.
func safeTree(p string, keep ...string) error {
	if err := safePath(p); err != nil {
		return err
	}
	clean := filepath.Clean(p)
	if isSystemDir(filepath.Dir(clean)) && !strings.Contains(filepath.Base(clean), "weft") {
		return fmt.Errorf("refusing to remove %q and everything in it: a system directory, not Weft's", p)
	}
	for _, k := range keep {
		if rel, err := filepath.Rel(clean, filepath.Clean(k)); k != "" && err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fmt.Errorf("refusing to remove %q and everything in it: it holds the CNI directory %s", p, k)
		}
	}
	return nil
}

func isSystemDir(p string) bool {
	switch p {
	case "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var":
		return true
	}
	return false
}

func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}
