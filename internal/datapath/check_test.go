package datapath_test

import (
	"net"
	"net/netip"
	"sort"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

func (c *testNet) check(t *testing.T, name string) datapath.Drift {
	t.Helper()
	var d datapath.Drift
	c.topo.Nodes[name].Do(t, func() (err error) {
		paths, err := c.dps[name].Plan(c.peers())
		if err != nil {
			return err
		}
		d, err = c.dps[name].Check(paths)
		return err
	})
	return d
}

func entries(es []datapath.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Kind+" "+e.Key)
	}
	sort.Strings(out)
	return out
}

func same(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Check names exactly the entries that were broken behind the agent's
// back, changes nothing itself, and finds nothing once Reconcile ran.
func TestCheckNamesMissingStaleAndWrongEntries(t *testing.T) {
	c := &testNet{topo: testnet.NewTopo(t, "wtd", []string{"a", "b"}, []string{"c"}),
		dps: map[string]*datapath.Datapath{}, records: map[string]cluster.Node{}}
	for i, n := range []string{"a", "b", "c"} {
		c.add(t, n, cluster.BackendAuto, subnetOf(i+1))
	}
	c.reconcile(t, "a", c.peers())
	if d := c.check(t, "a"); !d.Clean() {
		t.Fatalf("right after a reconcile: %+v", d)
	}

	b, cc := c.records["b"], c.records["c"]
	stale := netip.MustParsePrefix("10.244.99.0/24")
	c.topo.Nodes["a"].Do(t, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		// b's route is gone; a route of Weft's for a subnet no peer has;
		// c's VTEP neighbour has a wrong MAC; c's FDB entry is gone.
		if err := netlink.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: b.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)},
			Protocol: names.RouteProtocol, Table: unix.RT_TABLE_MAIN}); err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: stale.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)},
			Gw: b.UnderlayIP.AsSlice(), LinkIndex: eth0.Attrs().Index, Protocol: names.RouteProtocol}); err != nil {
			return err
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: cc.Subnet.Addr().AsSlice(), HardwareAddr: net.HardwareAddr{0x0e, 0x76, 1, 2, 3, 4}}); err != nil {
			return err
		}
		mac, _ := net.ParseMAC(cc.VTEPMAC)
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			HardwareAddr: mac, IP: cc.UnderlayIP.AsSlice()})
	})

	d := c.check(t, "a")
	want := map[string][]string{
		"missing": {"fdb " + cc.VTEPMAC, "route " + b.Subnet.String()},
		"stale":   {"route " + stale.String()},
		"wrong":   {"neighbour " + cc.Subnet.Addr().String()},
	}
	got := map[string][]string{"missing": entries(d.Missing), "stale": entries(d.Stale), "wrong": entries(d.Wrong)}
	for k := range want {
		if !same(got[k], want[k]) {
			t.Errorf("%s: %v, want %v", k, got[k], want[k])
		}
	}
	for _, e := range append(append(d.Missing, d.Stale...), d.Wrong...) {
		t.Logf("%s", e)
	}
	// Check is read-only: a second look sees the same.
	if again := c.check(t, "a"); !same(entries(again.Missing), got["missing"]) || !same(entries(again.Stale), got["stale"]) ||
		!same(entries(again.Wrong), got["wrong"]) {
		t.Errorf("a second check differs: %+v", again)
	}

	c.reconcile(t, "a", c.peers())
	if d := c.check(t, "a"); !d.Clean() {
		t.Errorf("after a reconcile: %+v", d)
	}

	// The device's MTU and its VTEP address are Reconcile's too.
	c.topo.Nodes["a"].Do(t, func() error {
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(vx, vx.Attrs().MTU-10); err != nil {
			return err
		}
		addrs, err := netlink.AddrList(vx, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := netlink.AddrDel(vx, &a); err != nil {
				return err
			}
		}
		return nil
	})
	d = c.check(t, "a")
	wantWrong := []string{"device " + names.VXLANDevice + " MTU", "device " + names.VXLANDevice + " address"}
	sort.Strings(wantWrong)
	// Removing the device's last address makes the kernel flush the
	// routes and neighbours through it as well.
	wantMissing := []string{"neighbour " + cc.Subnet.Addr().String(), "route " + cc.Subnet.String()}
	if got := entries(d.Wrong); !same(got, wantWrong) || !same(entries(d.Missing), wantMissing) || len(d.Stale) > 0 {
		t.Errorf("with a wrong MTU and no VTEP address: wrong %v (want %v), missing %v (want %v), stale %v", got, wantWrong, d.Missing, wantMissing, d.Stale)
	}
	c.reconcile(t, "a", c.peers())
	if d := c.check(t, "a"); !d.Clean() {
		t.Errorf("after repairing the device: %+v", d)
	}

	// Without the VXLAN device, everything on it is missing too.
	c.topo.Nodes["a"].Do(t, func() error {
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		return netlink.LinkDel(vx)
	})
	d = c.check(t, "a")
	wantMissing = []string{"device " + names.VXLANDevice, "fdb " + cc.VTEPMAC, "neighbour " + cc.Subnet.Addr().String(), "route " + cc.Subnet.String()}
	if got := entries(d.Missing); !same(got, wantMissing) || len(d.Stale)+len(d.Wrong) > 0 {
		t.Errorf("without the VXLAN device: missing %v (want %v), stale %v, wrong %v", got, wantMissing, d.Stale, d.Wrong)
	}
}
