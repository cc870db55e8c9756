package doctor

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cniplugin"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// A lease whose pod veth exists is fine; one whose veth is gone, and one
// from an earlier subnet, are leaks; a pod veth with no lease is an
// orphan. Nothing is changed by looking.
func TestIPAMLeaksAndOrphans(t *testing.T) {
	name := fmt.Sprintf("wtd%06d", rand.IntN(1e6))
	n, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); netns.Delete(name) })
	subnet := netip.MustParsePrefix("10.213.1.0/24")
	o := Options{DataDir: t.TempDir()}
	o.defaults(agentapi.Dirs{})
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
		for i, host := range []string{cniplugin.HostVethName("alive", "eth0"), orphan} {
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
