package datapath_test

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/kernelstate"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// testNet is a test network with one datapath per node.
type testNet struct {
	topo    *testnet.Topo
	dps     map[string]*datapath.Datapath
	records map[string]cluster.Node
}

// clusterCIDR holds every node's subnet in these tests.
var clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

func subnetOf(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
}

// newCluster makes the nodes, gives node k the subnet 10.244.k+1.0/24 and
// a bridge holding its gateway, and brings up each node's VXLAN device.
func newCluster(t *testing.T, backend cluster.Backend, segments ...[]string) *testNet {
	c := &testNet{topo: testnet.NewTopo(t, "wta", segments...), dps: map[string]*datapath.Datapath{}, records: map[string]cluster.Node{}}
	i := 0
	for _, seg := range segments {
		for _, name := range seg {
			i++
			c.add(t, name, backend, subnetOf(i))
		}
	}
	return c
}

func (c *testNet) add(t *testing.T, name string, backend cluster.Backend, subnet netip.Prefix) {
	n := c.topo.Nodes[name]
	n.Do(t, func() error {
		dp, err := datapath.New(datapath.Config{Node: name, Backend: backend, Subnet: subnet, UnderlayIP: n.IP, ClusterCIDR: clusterCIDR})
		if err != nil {
			return err
		}
		mac, err := dp.EnsureDevice()
		if err != nil {
			return err
		}
		gw := netip.PrefixFrom(subnet.Addr().Next(), subnet.Bits())
		if _, err := bridge.Ensure(names.Bridge, gw, dp.PodMTU()); err != nil {
			return err
		}
		c.dps[name] = dp
		rec := cluster.Node{Name: name, UnderlayIP: n.IP, Subnet: subnet, Backend: backend}
		if mac != nil {
			rec.VTEPMAC = mac.String()
		}
		c.records[name] = rec
		return nil
	})
}

func (c *testNet) peers() []cluster.Node {
	var out []cluster.Node
	for _, r := range c.records {
		out = append(out, r)
	}
	return out
}

func (c *testNet) reconcile(t *testing.T, name string, peers []cluster.Node) datapath.Result {
	t.Helper()
	var res datapath.Result
	c.topo.Nodes[name].Do(t, func() error {
		var err error
		res, err = c.dps[name].Reconcile(peers)
		return err
	})
	return res
}

func gateway(r cluster.Node) netip.Addr { return r.Subnet.Addr().Next() }

// echo sends real packets between the bridge gateways of two nodes: the
// same path a pod's packet takes once it leaves its node.
func (c *testNet) echo(t *testing.T, from, to string) {
	t.Helper()
	if err := testnet.Echo(c.topo.Nodes[from], gateway(c.records[from]), c.topo.Nodes[to], gateway(c.records[to])); err != nil {
		t.Fatal(err)
	}
}

// kernel is what a node's kernel holds of Weft's.
type kernel struct {
	routes []string // "dst via gw dev onlink"
	neighs []string // "ip mac"
	fdb    []string // "mac dst"
	other  []string // routes not Weft's
}

func (c *testNet) kernel(t *testing.T, name string) kernel {
	t.Helper()
	var k kernel
	f := kernelstate.Field
	snap := testnet.Kernel(t, c.topo.Nodes[name].Path())
	for _, l := range snap.Of("route") {
		if strings.Contains(f(l, "dst"), ":") {
			continue // IPv6: Weft routes IPv4 only
		}
		r := fmt.Sprintf("%s via %s dev %s", f(l, "dst"), f(l, "gw"), f(l, "dev"))
		if f(l, "onlink") == "true" {
			r += " onlink"
		}
		if f(l, "proto") == strconv.Itoa(names.RouteProtocol) {
			k.routes = append(k.routes, r)
		} else {
			k.other = append(k.other, r)
		}
	}
	// The snapshot holds only permanent neighbours: Weft's are, and one
	// that is not is missing here.
	for _, l := range snap.Of("neigh") {
		if f(l, "dev") == names.VXLANDevice {
			k.neighs = append(k.neighs, f(l, "ip")+" "+f(l, "lladdr"))
		}
	}
	for _, l := range snap.Of("fdb") {
		if f(l, "dev") == names.VXLANDevice {
			k.fdb = append(k.fdb, f(l, "mac")+" "+f(l, "dst"))
		}
	}
	return k
}

func has(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func paths(res datapath.Result) map[string]string {
	m := map[string]string{}
	for _, p := range res.Peers {
		m[p.Name] = p.Path
	}
	return m
}

func TestAutoPicksDirectRoutesOnASegmentAndVXLANAcrossARouter(t *testing.T) {
	c := newCluster(t, cluster.BackendAuto, []string{"a", "b"}, []string{"c"})
	peers := c.peers()
	for _, n := range []string{"a", "b", "c"} {
		c.reconcile(t, n, peers)
	}
	a, b, cc := c.records["a"], c.records["b"], c.records["c"]

	resA := c.reconcile(t, "a", peers)
	if got := paths(resA); got["b"] != datapath.PathDirect || got["c"] != datapath.PathVXLAN || len(got) != 2 {
		t.Fatalf("node a's paths = %v, want b direct and c vxlan; %+v", got, resA.Peers)
	}
	if resA.Added != 0 || resA.Removed != 0 {
		t.Fatalf("second reconcile with the same peers changed the kernel: %+v", resA)
	}
	for _, p := range resA.Peers {
		if p.Reason == "" {
			t.Errorf("peer %s has no reason for its path", p.Name)
		}
	}
	if got := paths(c.reconcile(t, "c", peers)); got["a"] != datapath.PathVXLAN || got["b"] != datapath.PathVXLAN {
		t.Fatalf("node c's paths = %v, want vxlan to both", got)
	}

	k := c.kernel(t, "a")
	wantRoutes := []string{
		fmt.Sprintf("%s via %s dev eth0", b.Subnet, b.UnderlayIP),
		fmt.Sprintf("%s via %s dev %s onlink", cc.Subnet, cc.Subnet.Addr(), names.VXLANDevice),
	}
	for _, w := range wantRoutes {
		if !has(k.routes, w) {
			t.Errorf("node a lacks route %q; has %v", w, k.routes)
		}
	}
	if len(k.routes) != 2 {
		t.Errorf("node a has Weft routes %v, want exactly %v", k.routes, wantRoutes)
	}
	if want := cc.Subnet.Addr().String() + " " + cc.VTEPMAC; len(k.neighs) != 1 || k.neighs[0] != want {
		t.Errorf("node a's VXLAN neighbours = %v, want [%s]", k.neighs, want)
	}
	if want := cc.VTEPMAC + " " + cc.UnderlayIP.String(); len(k.fdb) != 1 || k.fdb[0] != want {
		t.Errorf("node a's FDB = %v, want [%s]", k.fdb, want)
	}

	// Real packets, both ways, over the direct route and over VXLAN.
	c.echo(t, "a", "b")
	c.echo(t, "b", "a")
	c.echo(t, "a", "c")
	c.echo(t, "c", "b")
	_ = a
}

func TestReconcileRemovesWhatIsStaleAndLeavesWhatIsNotWefts(t *testing.T) {
	c := newCluster(t, cluster.BackendVXLAN, []string{"a", "b", "c"})
	c.reconcile(t, "a", c.peers())

	// Someone else's route and neighbour on node a.
	foreign := netip.MustParsePrefix("10.99.0.0/24")
	c.topo.Nodes["a"].Do(t, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index,
			Dst: &net.IPNet{IP: foreign.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("172.30.1.254")})
	})

	// b moved to another underlay address (and so VTEP MAC), c moved to
	// another subnet, and a peer d that a never saw go is gone from the list.
	b, cc := c.records["b"], c.records["c"]
	oldB, oldC := b, cc
	b.UnderlayIP = netip.MustParseAddr("172.30.1.77")
	b.VTEPMAC = datapath.VTEPMAC(b.UnderlayIP).String()
	cc.Subnet = netip.MustParsePrefix("10.244.40.0/24")
	d := cluster.Node{Name: "d", UnderlayIP: netip.MustParseAddr("172.30.1.99"), Subnet: netip.MustParsePrefix("10.244.50.0/24"), VTEPMAC: "0e:76:ac:1e:01:63", Backend: cluster.BackendVXLAN}
	c.reconcile(t, "a", []cluster.Node{c.records["a"], oldB, oldC, d})
	if k := c.kernel(t, "a"); len(k.routes) != 3 || len(k.neighs) != 3 || len(k.fdb) != 3 {
		t.Fatalf("with peers b, c, d node a has %+v", k)
	}
	res := c.reconcile(t, "a", []cluster.Node{c.records["a"], b, cc})

	k := c.kernel(t, "a")
	want := kernel{
		routes: []string{
			fmt.Sprintf("%s via %s dev %s onlink", b.Subnet, b.Subnet.Addr(), names.VXLANDevice),
			fmt.Sprintf("%s via %s dev %s onlink", cc.Subnet, cc.Subnet.Addr(), names.VXLANDevice),
		},
		neighs: []string{b.Subnet.Addr().String() + " " + b.VTEPMAC, cc.Subnet.Addr().String() + " " + cc.VTEPMAC},
		fdb:    []string{b.VTEPMAC + " " + b.UnderlayIP.String(), cc.VTEPMAC + " " + cc.UnderlayIP.String()},
	}
	for what, pair := range map[string][2][]string{"routes": {k.routes, want.routes}, "neighbours": {k.neighs, want.neighs}, "fdb": {k.fdb, want.fdb}} {
		if len(pair[0]) != len(pair[1]) {
			t.Errorf("node a's %s = %v, want %v", what, pair[0], pair[1])
		}
		for _, w := range pair[1] {
			if !has(pair[0], w) {
				t.Errorf("node a's %s = %v, lacks %q", what, pair[0], w)
			}
		}
	}
	if res.Removed == 0 || res.Added == 0 {
		t.Errorf("reconcile reported %+v, want removals and additions", res)
	}
	if !has(k.other, fmt.Sprintf("%s via 172.30.1.254 dev eth0", foreign)) {
		t.Errorf("the foreign route %s is gone: %v", foreign, k.other)
	}

	// Remove takes every Weft route and the VXLAN device, nothing else.
	c.topo.Nodes["a"].Do(t, func() error { _, err := datapath.Remove(); return err })
	k = c.kernel(t, "a")
	if len(k.routes) != 0 || len(k.neighs) != 0 || len(k.fdb) != 0 {
		t.Fatalf("after Remove node a still has %+v", k)
	}
	if !has(k.other, fmt.Sprintf("%s via 172.30.1.254 dev eth0", foreign)) {
		t.Errorf("Remove removed the foreign route %s: %v", foreign, k.other)
	}
	c.topo.Nodes["a"].Do(t, func() error {
		if _, err := netlink.LinkByName(names.VXLANDevice); err == nil {
			return fmt.Errorf("%s survived Remove", names.VXLANDevice)
		}
		return nil
	})
}

func TestHostGWReachesOnlyItsSegmentAndRunsNoVXLAN(t *testing.T) {
	c := newCluster(t, cluster.BackendHostGW, []string{"a", "b"}, []string{"c"})
	peers := c.peers()
	for _, n := range []string{"a", "b", "c"} {
		if c.records[n].VTEPMAC != "" {
			t.Fatalf("host-gw node %s published a VTEP MAC", n)
		}
		if mtu := c.dps[n].PodMTU(); mtu != c.dps[n].UnderlayMTU() {
			t.Fatalf("host-gw pod MTU %d, want the underlay's %d", mtu, c.dps[n].UnderlayMTU())
		}
	}
	res := c.reconcile(t, "a", peers)
	c.reconcile(t, "b", peers)
	got := paths(res)
	if got["b"] != datapath.PathDirect || got["c"] != datapath.PathNone {
		t.Fatalf("host-gw paths from a = %v, want b direct, c none", got)
	}
	for _, p := range res.Peers {
		if p.Name == "c" && !strings.Contains(p.Reason, "L2 segment") {
			t.Errorf("reason for not reaching c: %q", p.Reason)
		}
	}
	if k := c.kernel(t, "a"); len(k.routes) != 1 || len(k.neighs) != 0 || len(k.fdb) != 0 {
		t.Fatalf("host-gw node a holds %+v, want one direct route", k)
	}
	c.echo(t, "a", "b")
	if _, err := testnet.SeenAs(c.topo.Nodes["a"], gateway(c.records["a"]), c.topo.Nodes["c"], gateway(c.records["c"]), 3); err == nil {
		t.Fatal("a reached c's pod subnet with host-gw across a router")
	}
}

func TestVXLANDeviceIsStableAcrossRestartsAndRepaired(t *testing.T) {
	c := newCluster(t, cluster.BackendVXLAN, []string{"a", "b"})
	peers := c.peers()
	c.reconcile(t, "a", peers)
	c.reconcile(t, "b", peers)
	n := c.topo.Nodes["a"]
	var before *netlink.Vxlan
	n.Do(t, func() error {
		l, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		before = l.(*netlink.Vxlan)
		return nil
	})
	if before.Learning || before.VxlanId != names.VNI || before.Port != names.VXLANPort || !before.SrcAddr.Equal(net.IP(n.IP.AsSlice())) {
		t.Fatalf("VXLAN device %+v: want VNI %d, port %d, local %s, learning off", before, names.VNI, names.VXLANPort, n.IP)
	}
	if before.MTU != c.dps["a"].UnderlayMTU()-cluster.VXLANOverhead || before.MTU != c.dps["a"].PodMTU() {
		t.Fatalf("VXLAN MTU %d, underlay %d", before.MTU, c.dps["a"].UnderlayMTU())
	}
	if before.HardwareAddr.String() != datapath.VTEPMAC(n.IP).String() {
		t.Fatalf("VTEP MAC %s, want %s derived from %s", before.HardwareAddr, datapath.VTEPMAC(n.IP), n.IP)
	}

	// A restarted agent: a new Datapath that finds everything right
	// changes nothing and keeps the device.
	var res datapath.Result
	n.Do(t, func() error {
		dp, err := datapath.New(datapath.Config{Node: "a", Backend: cluster.BackendVXLAN, Subnet: c.records["a"].Subnet, UnderlayIP: n.IP, ClusterCIDR: clusterCIDR})
		if err != nil {
			return err
		}
		res, err = dp.Reconcile(peers)
		return err
	})
	if res.Added != 0 || res.Removed != 0 {
		t.Fatalf("a restarted datapath changed the kernel: %+v", res)
	}
	// Drift: someone deletes the route and the neighbour; the next
	// reconcile puts them back on the same device.
	b := c.records["b"]
	n.Do(t, func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil || len(routes) != 1 {
			return fmt.Errorf("want one Weft route: %v %v", routes, err)
		}
		if err := netlink.RouteDel(&routes[0]); err != nil {
			return err
		}
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: before.Index, Family: netlink.FAMILY_V4, IP: net.IP(b.Subnet.Addr().AsSlice())})
	})
	res = c.reconcile(t, "a", peers)
	if res.Added != 2 {
		t.Fatalf("repair added %d entries, want 2 (route, neighbour): %+v", res.Added, res)
	}
	n.Do(t, func() error {
		l, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		if l.Attrs().Index != before.Index {
			return fmt.Errorf("VXLAN device was re-created (index %d → %d)", before.Index, l.Attrs().Index)
		}
		return nil
	})
	c.echo(t, "a", "b")
}

func TestBadConfigIsAClearError(t *testing.T) {
	topo := testnet.NewTopo(t, "wta", []string{"a"})
	n := topo.Nodes["a"]
	for _, tc := range []struct {
		cfg  datapath.Config
		want string
	}{
		{datapath.Config{Node: "a", Backend: "ipip", Subnet: subnetOf(1), UnderlayIP: n.IP, ClusterCIDR: clusterCIDR}, "unknown backend"},
		{datapath.Config{Node: "a", Backend: cluster.BackendAuto, Subnet: subnetOf(1), UnderlayIP: n.IP}, "cluster CIDR"},
		{datapath.Config{Node: "a", Backend: cluster.BackendAuto, Subnet: netip.MustParsePrefix("10.9.0.0/24"), UnderlayIP: n.IP, ClusterCIDR: clusterCIDR}, "not a /24 of the cluster CIDR"},
		{datapath.Config{Node: "a", Backend: cluster.BackendAuto, UnderlayIP: n.IP}, "subnet"},
		{datapath.Config{Node: "a", Backend: cluster.BackendAuto, Subnet: subnetOf(1), UnderlayIP: netip.MustParseAddr("172.30.9.9"), ClusterCIDR: clusterCIDR}, "not on any interface"},
	} {
		n.Do(t, func() error {
			_, err := datapath.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				return fmt.Errorf("New(%+v) = %v, want an error about %q", tc.cfg, err, tc.want)
			}
			return nil
		})
	}
	n.Do(t, func() error {
		ip, err := datapath.DefaultUnderlayIP()
		if err != nil || ip != n.IP {
			return fmt.Errorf("DefaultUnderlayIP = %v, %v; want %s", ip, err, n.IP)
		}
		return nil
	})
}

func TestBadOrConflictingPeerRecordsProgramNothing(t *testing.T) {
	c := newCluster(t, cluster.BackendVXLAN, []string{"a", "b"})
	a, b := c.records["a"], c.records["b"]
	rec := func(name, ip, subnet string) cluster.Node {
		addr := netip.MustParseAddr(ip)
		return cluster.Node{Name: name, UnderlayIP: addr, Subnet: netip.MustParsePrefix(subnet), VTEPMAC: datapath.VTEPMAC(addr).String()}
	}
	dupMAC := rec("zz-dup-mac", "172.30.1.52", "10.244.61.0/24")
	dupMAC.VTEPMAC = b.VTEPMAC
	bad := []cluster.Node{
		a, b,
		{Name: "no-ip", Subnet: netip.MustParsePrefix("10.244.60.0/24"), VTEPMAC: "0e:76:00:00:00:01"},
		rec("mine", "172.30.1.50", a.Subnet.String()),
		rec("zz-dup-subnet", "172.30.1.51", b.Subnet.String()),
		dupMAC,
		rec("zz-wider", "172.30.1.53", "10.244.16.0/20"),
	}
	res := c.reconcile(t, "a", bad)
	want := map[string]string{
		"b":             datapath.PathVXLAN,
		"no-ip":         "no IPv4 underlay",
		"mine":          "overlaps this node's",
		"zz-dup-subnet": "overlaps " + b.Subnet.String() + " of node b",
		"zz-dup-mac":    "VTEP MAC " + b.VTEPMAC + " is not",
		"zz-wider":      "not a /24 of the cluster CIDR",
	}
	for _, p := range res.Peers {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected peer %+v", p)
			continue
		}
		if p.Name == "b" {
			if p.Path != w {
				t.Errorf("b: %+v", p)
			}
			continue
		}
		if p.Path != datapath.PathNone || !strings.Contains(p.Reason, w) {
			t.Errorf("%s: path %s reason %q, want none and a reason about %q", p.Name, p.Path, p.Reason, w)
		}
	}
	if len(res.Peers) != len(want) {
		t.Errorf("%d peers reported, want %d", len(res.Peers), len(want))
	}
	if k := c.kernel(t, "a"); len(k.routes) != 1 || len(k.neighs) != 1 || len(k.fdb) != 1 {
		t.Fatalf("node a holds %+v, want only b's entries", k)
	}
	c.reconcile(t, "b", c.peers())
	c.echo(t, "a", "b")
}
