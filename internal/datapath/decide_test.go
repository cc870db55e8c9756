package datapath

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// These tests need no root: the decisions, the plan and the diff are
// pure functions of values.

func testSelf(b cluster.Backend) self {
	return self{
		Config: Config{Node: "a", Backend: b, Subnet: netip.MustParsePrefix("10.244.1.0/24"),
			UnderlayIP: netip.MustParseAddr("172.30.1.1"), ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24},
		protected: []netip.Prefix{netip.MustParsePrefix("172.30.1.0/24"), netip.MustParsePrefix("10.244.9.9/32")},
		vxlan:     b.UsesVXLAN(),
	}
}

func rec(name, ip, subnet string) cluster.Node {
	addr := netip.MustParseAddr(ip)
	return cluster.Node{Name: name, UnderlayIP: addr, Subnet: netip.MustParsePrefix(subnet), VTEPMAC: VTEPMAC(addr).String()}
}

func TestVetRefusesWhatARecordMayNotClaim(t *testing.T) {
	me := testSelf(cluster.BackendAuto)
	notHeld := rec("n", "172.30.2.1", "10.244.2.0/24")
	notHeld.NotHeld = "held by b"
	badMAC := rec("n", "172.30.2.1", "10.244.2.0/24")
	badMAC.VTEPMAC = VTEPMAC(netip.MustParseAddr("172.30.2.2")).String()
	noVTEP := rec("n", "172.30.2.1", "10.244.2.0/24")
	noVTEP.VTEPMAC = ""
	for _, tc := range []struct {
		name string
		p    cluster.Node
		want string
	}{
		{"good", rec("n", "172.30.2.1", "10.244.2.0/24"), ""},
		{"good without VTEP", noVTEP, ""},
		{"no underlay", cluster.Node{Name: "n", Subnet: netip.MustParsePrefix("10.244.2.0/24")}, RefusedMalformed},
		{"no subnet", cluster.Node{Name: "n", UnderlayIP: netip.MustParseAddr("172.30.2.1")}, RefusedMalformed},
		{"own underlay", rec("n", "172.30.1.1", "10.244.2.0/24"), RefusedOwnAddress},
		{"own subnet", rec("n", "172.30.2.1", "10.244.1.0/24"), RefusedProtected},
		{"underlay network", rec("n", "172.30.2.1", "172.30.1.0/24"), RefusedOutsideCIDR},
		{"half the internet", rec("n", "172.30.2.1", "128.0.0.0/1"), RefusedOutsideCIDR},
		{"services", rec("n", "172.30.2.1", "10.96.0.0/12"), RefusedOutsideCIDR},
		{"wrong length", rec("n", "172.30.2.1", "10.244.2.0/25"), RefusedOutsideCIDR},
		{"whole cluster", rec("n", "172.30.2.1", "10.244.0.0/16"), RefusedProtected},
		{"protected inside the cluster", rec("n", "172.30.2.1", "10.244.9.0/24"), RefusedProtected},
		{"not the lease holder", notHeld, RefusedNotHeld},
		{"MAC not derived", badMAC, RefusedVTEPMismatch},
	} {
		got, reason := vet(me, tc.p)
		if got != tc.want || (got != "" && reason == "") {
			t.Errorf("%s: vet = %q (%s), want %q", tc.name, got, reason, tc.want)
		}
	}
}

func TestChooseIsAFunctionOfBackendRecordAndAdjacency(t *testing.T) {
	onLink := adjacency{linkIndex: 2, link: "eth0"}
	viaGW := adjacency{linkIndex: 2, link: "eth0", gw: netip.MustParseAddr("172.30.1.254")}
	noRoute := adjacency{err: errors.New("network unreachable")}
	withVTEP := rec("b", "172.30.2.1", "10.244.2.0/24")
	noVTEP := withVTEP
	noVTEP.VTEPMAC = ""
	for _, tc := range []struct {
		backend cluster.Backend
		p       cluster.Node
		adj     adjacency
		want    string
		why     string
	}{
		{cluster.BackendAuto, withVTEP, onLink, PathDirect, "directly connected"},
		{cluster.BackendAuto, withVTEP, viaGW, PathVXLAN, "through gateway"},
		{cluster.BackendAuto, noVTEP, viaGW, PathNone, "no VXLAN device"},
		{cluster.BackendAuto, withVTEP, noRoute, PathVXLAN, "no route"},
		{cluster.BackendHostGW, noVTEP, onLink, PathDirect, "directly connected"},
		{cluster.BackendHostGW, withVTEP, viaGW, PathNone, "L2 segment"},
		{cluster.BackendVXLAN, withVTEP, adjacency{}, PathVXLAN, "backend vxlan"},
		{cluster.BackendVXLAN, noVTEP, onLink, PathDirect, "directly connected"},
		{cluster.BackendVXLAN, noVTEP, viaGW, PathNone, "no VXLAN device"},
	} {
		path, why := choose(testSelf(tc.backend), tc.p, tc.adj)
		if path != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s, VTEP %q, %v: %s (%s), want %s (%s)", tc.backend, tc.p.VTEPMAC, tc.adj, path, why, tc.want, tc.why)
		}
	}
	me := testSelf(cluster.BackendAuto)
	me.vxlan = false
	if path, why := choose(me, withVTEP, viaGW); path != PathNone || !strings.Contains(why, "no VXLAN device") {
		t.Errorf("without a VXLAN device: %s (%s)", path, why)
	}
}

func TestPlanGivesConflictsToTheLeaseHolderWhateverTheNames(t *testing.T) {
	me := testSelf(cluster.BackendVXLAN)
	b := rec("b", "172.30.2.1", "10.244.2.0/24")
	impostor := rec("0-impostor", "172.30.2.9", "10.244.2.0/24")
	impostor.NotHeld = "held by b"
	later := rec("c", "172.30.2.3", "10.244.2.0/24") // no lease information: first name wins
	lookups := 0
	paths := plan(me, []cluster.Node{later, b, impostor, rec("a", "172.30.1.1", "10.244.1.0/24")},
		func(netip.Addr) adjacency { lookups++; return adjacency{} })
	got := map[string]string{}
	for _, p := range paths {
		got[p.Name] = p.Path + "/" + p.Refused
	}
	want := map[string]string{"0-impostor": "none/" + RefusedNotHeld, "b": "vxlan/", "c": "none/" + RefusedConflict}
	if len(got) != len(want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	if lookups != 0 {
		t.Errorf("backend vxlan looked up %d adjacencies for peers with a VTEP", lookups)
	}
	if paths[1].VTEPMAC != b.VTEPMAC || paths[1].Device != names.VXLANDevice {
		t.Errorf("b's decision %+v lacks its VTEP MAC or device", paths[1])
	}
}

func TestDiffNamesThePeerOfEveryChange(t *testing.T) {
	const vx = 7
	paths := []PeerPath{
		{Name: "b", UnderlayIP: netip.MustParseAddr("172.30.2.1"), Subnet: netip.MustParsePrefix("10.244.2.0/24"), Path: PathVXLAN,
			VTEPMAC: VTEPMAC(netip.MustParseAddr("172.30.2.1")).String()},
		{Name: "c", UnderlayIP: netip.MustParseAddr("172.30.1.3"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), Path: PathDirect, linkIndex: 2},
		{Name: "d", Subnet: netip.MustParsePrefix("10.244.4.0/24"), Path: PathNone},
	}
	want := assemble(paths, vx, func(string) int { return 0 })
	if len(want.routes) != 2 || len(want.neighs) != 1 || len(want.fdb) != 1 {
		t.Fatalf("assemble = %+v", want)
	}
	bMAC, _ := net.ParseMAC(paths[0].VTEPMAC)
	stale := netlink.Route{Dst: prefixNet(netip.MustParsePrefix("10.244.5.0/24")), Gw: net.ParseIP("172.30.1.5"), LinkIndex: 2, Protocol: names.RouteProtocol}
	wrongC := netlink.Route{Dst: prefixNet(paths[1].Subnet), Gw: net.ParseIP("172.30.1.99"), LinkIndex: 2, Protocol: names.RouteProtocol}
	h := have{
		routes: []netlink.Route{stale, wrongC},
		fdb: []netlink.Neigh{{LinkIndex: vx, Family: unix.AF_BRIDGE, HardwareAddr: bMAC, IP: net.ParseIP("172.30.9.9"),
			Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT}},
	}
	got := map[string]bool{}
	for _, c := range diff(want, h, vx) {
		got[string(c.Op)+" "+c.Kind+" "+c.Peer] = true
	}
	for _, w := range []string{"delete route ", "replace route c", "add route b", "add neighbour b", "replace fdb b"} {
		if !got[w] {
			t.Errorf("diff lacks %q: %v", w, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("diff = %v, want 5 changes", got)
	}
	// Nothing to do once the kernel holds the plan.
	h = have{}
	for _, r := range want.routes {
		h.routes = append(h.routes, r.v)
	}
	for ip, m := range want.neighs {
		h.neighs = append(h.neighs, neigh(vx, ip, m.v))
	}
	h.fdb = append(h.fdb, netlink.Neigh{LinkIndex: vx, HardwareAddr: bMAC, IP: net.ParseIP("172.30.2.1")})
	if cs := diff(want, h, vx); len(cs) != 0 {
		t.Errorf("diff of the plan against itself = %+v", cs)
	}
}
