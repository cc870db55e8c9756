package labtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
)

// AssertGone fails the test if anything of lab name is left: a
// namespace, its directory, or a process.
func AssertGone(t testing.TB, name string) {
	t.Helper()
	if left, _ := netns.List(name + "-"); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if _, err := os.Stat(lab.Dir(name)); !os.IsNotExist(err) {
		t.Errorf("directory %s left", lab.Dir(name))
	}
	if pids := Processes(name); len(pids) > 0 {
		t.Errorf("processes left: %v", pids)
	}
}

// Processes finds the live processes running for lab name: its agents
// and datastore name the lab's directory on their command line. This
// reads /proc itself rather than asking the lab, so that it checks the
// lab's own bookkeeping.
func Processes(name string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(b, []byte(lab.Dir(name)+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// HostNetwork is the host namespace's interfaces, and its addresses and
// routes of every family: a lab must never change them (it gives the host
// no interface, no address and no route to one).
func HostNetwork(t testing.TB) string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range links {
		fmt.Fprintln(&b, l.Type(), l.Attrs().Name)
	}
	for _, a := range addrs {
		fmt.Fprintln(&b, a.IPNet)
	}
	for _, r := range routes {
		fmt.Fprintln(&b, r.Dst, r.Gw, r.LinkIndex)
	}
	return b.String()
}
