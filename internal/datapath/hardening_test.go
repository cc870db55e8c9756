package datapath_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// Tests that a peer's record, which any node (or anyone who can write
// to the datastore) controls, can neither take over a route this node
// needs nor cut a legitimate peer off.

// forged is a record with a VTEP MAC that matches its underlay address,
// so that only the property under test can get it refused.
func forged(name, ip, subnet string) cluster.Node {
	addr := netip.MustParseAddr(ip)
	return cluster.Node{Name: name, UnderlayIP: addr, Subnet: netip.MustParsePrefix(subnet),
		VTEPMAC: datapath.VTEPMAC(addr).String(), Backend: cluster.BackendVXLAN}
}

// connected is the kernel's own route to a node's underlay network, as
// `ip route` shows it, or "" when it is gone.
func connected(t *testing.T, n *testnet.Node) string {
	t.Helper()
	var out string
	n.Do(t, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() == "172.30.1.0/24" {
				out = fmt.Sprintf("%s proto %d scope %d gw %v", r.Dst, r.Protocol, r.Scope, r.Gw)
			}
		}
		return nil
	})
	return out
}

func refusedAs(t *testing.T, res datapath.Result, name, refusal string) {
	t.Helper()
	for _, p := range res.Peers {
		if p.Name == name {
			if p.Path != datapath.PathNone || p.Refused != refusal || p.Reason == "" {
				t.Errorf("%s: path %s refused %q (%s), want no path, refused %q", name, p.Path, p.Refused, p.Reason, refusal)
			}
			return
		}
	}
	t.Errorf("%s is not among the reported peers %+v", name, res.Peers)
}

func TestRecordsOutsideTheClusterCIDRGetNothing(t *testing.T) {
	for _, backend := range []cluster.Backend{cluster.BackendHostGW, cluster.BackendVXLAN} {
		t.Run(backend.String(), func(t *testing.T) {
			c := newCluster(t, backend, []string{"a", "b"})
			want := connected(t, c.topo.Nodes["a"])
			if want == "" {
				t.Fatal("node a has no connected route to its underlay network")
			}
			b := c.records["b"]
			evil := []cluster.Node{
				forged("underlay", "172.30.1.2", "172.30.1.0/24"),
				forged("half", "172.30.1.2", "128.0.0.0/1"),
				forged("services", "172.30.1.2", "10.96.0.0/12"),
				forged("datastore", "172.30.1.2", "172.30.1.254/32"),
			}
			for i := range evil {
				evil[i].Backend = backend
				if backend == cluster.BackendHostGW {
					evil[i].VTEPMAC = ""
				}
			}
			res := c.reconcile(t, "a", append([]cluster.Node{c.records["a"], b}, evil...))
			for _, e := range evil {
				refusedAs(t, res, e.Name, datapath.RefusedOutsideCIDR)
			}
			if got := connected(t, c.topo.Nodes["a"]); got != want {
				t.Errorf("node a's route to its underlay network is %q, was %q", got, want)
			}
			if k := c.kernel(t, "a"); len(k.routes) != 1 {
				t.Errorf("node a holds Weft routes %v, want only b's", k.routes)
			}
			// The records go away: the underlay route is still the kernel's.
			c.reconcile(t, "a", []cluster.Node{c.records["a"], b})
			if got := connected(t, c.topo.Nodes["a"]); got != want {
				t.Errorf("after the records left, node a's route to its underlay network is %q, was %q", got, want)
			}
			c.reconcile(t, "b", c.peers())
			c.echo(t, "a", "b")
		})
	}
}

// Even inside the cluster CIDR (an operator may pick one that holds the
// underlay), a record never gets a route to a network this node is
// connected to, to its own addresses, or to the datastore.
func TestRecordsCoveringProtectedPrefixesGetNothing(t *testing.T) {
	topo := testnet.NewTopo(t, "dp", []string{"a", "b"})
	wide := netip.MustParsePrefix("172.16.0.0/12")
	datastore := netip.MustParsePrefix("172.30.7.9/32")
	subnet := netip.MustParsePrefix("172.31.1.0/24")
	n := topo.Nodes["a"]
	var dp *datapath.Datapath
	n.Do(t, func() (err error) {
		dp, err = datapath.New(datapath.Config{Node: "a", Backend: cluster.BackendHostGW, Subnet: subnet,
			UnderlayIP: n.IP, ClusterCIDR: wide, Protected: []netip.Prefix{datastore}})
		if err != nil {
			return err
		}
		_, err = bridge.Ensure(names.Bridge, netip.PrefixFrom(subnet.Addr().Next(), 24), dp.PodMTU())
		return err
	})
	t.Cleanup(dp.Close)
	want := connected(t, n)
	peers := []cluster.Node{
		{Name: "underlay", UnderlayIP: topo.Nodes["b"].IP, Subnet: netip.MustParsePrefix("172.30.1.0/24")},
		{Name: "datastore", UnderlayIP: topo.Nodes["b"].IP, Subnet: netip.MustParsePrefix("172.30.7.0/24")},
		{Name: "b", UnderlayIP: topo.Nodes["b"].IP, Subnet: netip.MustParsePrefix("172.31.2.0/24")},
	}
	var res datapath.Result
	n.Do(t, func() (err error) {
		res, err = dp.Reconcile(peers)
		return err
	})
	refusedAs(t, res, "underlay", datapath.RefusedProtected)
	refusedAs(t, res, "datastore", datapath.RefusedProtected)
	if p := res.Peers[0]; p.Name != "b" || p.Path != datapath.PathDirect {
		t.Errorf("b: %+v, want a direct path", p)
	}
	if got := connected(t, n); got != want {
		t.Errorf("node a's route to its underlay network is %q, was %q", got, want)
	}
}

// The lease holder keeps its path whatever the impostor's name sorts as;
// a VTEP MAC copied from another node is refused and the real node keeps
// its entries.
func TestImpostorsNeverDisplaceTheLeaseHolder(t *testing.T) {
	c := newCluster(t, cluster.BackendVXLAN, []string{"a", "b"})
	a, b := c.records["a"], c.records["b"]
	impostor := forged("0-impostor", "172.30.1.60", b.Subnet.String())
	impostor.NotHeld = "etcd says node b holds it"
	copycat := forged("0-copycat", "172.30.1.61", "10.244.70.0/24")
	copycat.VTEPMAC = b.VTEPMAC
	res := c.reconcile(t, "a", []cluster.Node{a, b, impostor, copycat})
	refusedAs(t, res, impostor.Name, datapath.RefusedNotHeld)
	refusedAs(t, res, copycat.Name, datapath.RefusedVTEPMismatch)
	if got := paths(res)["b"]; got != datapath.PathVXLAN {
		t.Fatalf("b's path is %q, want vxlan; %+v", got, res.Peers)
	}
	k := c.kernel(t, "a")
	wantFDB := b.VTEPMAC + " " + b.UnderlayIP.String()
	if len(k.routes) != 1 || len(k.fdb) != 1 || k.fdb[0] != wantFDB || len(k.neighs) != 1 {
		t.Fatalf("node a holds %+v, want only b's entries (FDB %s)", k, wantFDB)
	}
	c.reconcile(t, "b", c.peers())
	c.echo(t, "a", "b")
}

// A route to a peer's subnet that is not Weft's is never replaced or
// removed: the peer's route fails, with an error that says why.
func TestRoutesThatAreNotWeftsAreLeftAlone(t *testing.T) {
	c := newCluster(t, cluster.BackendHostGW, []string{"a", "b"})
	b := c.records["b"]
	theirs := &netlink.Route{Dst: &net.IPNet{IP: b.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)},
		Gw: net.ParseIP("172.30.1.254"), Protocol: unix.RTPROT_STATIC}
	c.topo.Nodes["a"].Do(t, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		theirs.LinkIndex = eth0.Attrs().Index
		return netlink.RouteAdd(theirs)
	})
	var err error
	c.topo.Nodes["a"].Do(t, func() error {
		_, err = c.dps["a"].Reconcile(c.peers())
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "not Weft's") {
		t.Errorf("Reconcile over a foreign route to %s: %v, want an error saying it is not Weft's", b.Subnet, err)
	}
	k := c.kernel(t, "a")
	if want := fmt.Sprintf("%s via 172.30.1.254 dev eth0", b.Subnet); !has(k.other, want) || len(k.routes) != 0 {
		t.Errorf("node a: Weft routes %v, others %v; want the foreign %q untouched", k.routes, k.other, want)
	}
	// Removing Weft leaves it too.
	c.topo.Nodes["a"].Do(t, func() error { _, err := datapath.Remove(); return err })
	if k := c.kernel(t, "a"); !has(k.other, fmt.Sprintf("%s via 172.30.1.254 dev eth0", b.Subnet)) {
		t.Errorf("Remove took a route that is not Weft's: %v", k.other)
	}
}
