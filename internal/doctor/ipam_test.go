package doctor

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A lease whose pod veth exists is fine; one whose veth is gone, and one
// from an earlier subnet, are leaks; a pod veth with no lease is an
// orphan. Nothing is changed by looking.
func TestIPAMLeaksAndOrphans(t *testing.T) {
	n := testnet.NewNS(t, "doc")
	subnet := netip.MustParsePrefix("10.213.1.0/24")
	o := Options{DataDir: t.TempDir()}
	o.defaults(names.Dirs{})
	dir := filepath.Join(o.DataDir, "ipam", names.NetworkName)
	store, err := ipam.Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	old, err := ipam.Open(dir, netip.MustParsePrefix("10.213.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		s  *ipam.Store
		id string
	}{{store, "alive"}, {store, "gone"}, {old, "old"}} {
		if _, _, err := a.s.Allocate(a.id, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	orphan := names.VethPrefix + "orphan01"
	err = n.Do(func(ns.NetNS) error {
		if _, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.213.1.1/24"), 1500); err != nil {
			return err
		}
		br, err := netlink.LinkByName(names.Bridge)
		if err != nil {
			return err
		}
		for i, host := range []string{names.HostVethName("alive", "eth0"), orphan} {
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: fmt.Sprintf("wtdpeer%d", i)}
			if err := netlink.LinkAdd(v); err != nil {
				return fmt.Errorf("add %s: %w", host, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Past the grace an ADD in flight has: the leases are old enough to judge.
	now = func() time.Time { return time.Now().Add(LeakGrace + time.Minute) }
	t.Cleanup(func() { now = time.Now })
	var st ipamState
	var fs []Finding
	if err := n.Do(func(ns.NetNS) (err error) {
		st, err = readIPAM(o, subnet)
		fs = checkIPAM(o, subnet, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var leaked []string
	for _, l := range st.leaks {
		leaked = append(leaked, l.ContainerID)
	}
	sort.Strings(leaked)
	if strings.Join(leaked, ",") != "gone,old" || st.leases != 3 {
		t.Errorf("leaks %v of %d leases, want gone and old of 3", leaked, st.leases)
	}
	if len(st.orphans) != 1 || st.orphans[0] != orphan {
		t.Errorf("orphans %v, want [%s]", st.orphans, orphan)
	}
	if len(fs) != 3 || fs[0].Result != Fail || fs[1].Result != Fail || fs[2].Result != Warn {
		t.Errorf("findings: %+v", fs)
	}
	for _, f := range fs {
		if f.Fix == "" {
			t.Errorf("finding without a fix: %+v", f)
		}
	}
	if leases, _ := store.Leases(); len(leases) != 3 {
		t.Errorf("doctor changed the leases: %v", leases)
	}
}

// A lease younger than the grace, whose veth does not exist yet, is an ADD
// in flight (the plugin leases first, then makes the veth): doctor does
// not call it leaked, so --release-leaks cannot give its address away.
// Once old, the same lease is a leak.
func TestYoungLeaseIsNotALeak(t *testing.T) {
	n := testnet.NewNS(t, "cn")
	subnet := netip.MustParsePrefix("10.213.2.0/24")
	o := Options{DataDir: t.TempDir()}
	o.defaults(names.Dirs{})
	store, err := ipam.Open(ipam.Dir(o.DataDir, names.NetworkName), subnet)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Allocate("inflight", "eth0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { now = time.Now })
	leaks := func() (ids []string) {
		t.Helper()
		var st ipamState
		if err := n.Do(func(ns.NetNS) (err error) { st, err = readIPAM(o, subnet); return err }); err != nil {
			t.Fatal(err)
		}
		for _, l := range st.leaks {
			ids = append(ids, l.ContainerID)
		}
		return ids
	}
	if got := leaks(); len(got) != 0 {
		t.Fatalf("a lease just made is reported leaked: %v", got)
	}
	now = func() time.Time { return time.Now().Add(LeakGrace + time.Second) }
	if got := leaks(); len(got) != 1 || got[0] != "inflight" {
		t.Fatalf("after the grace: leaks %v, want the lease", got)
	}
}
