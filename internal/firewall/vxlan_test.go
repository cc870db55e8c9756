package firewall_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nfeval"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// vxlanNode sets up node n as the agent would for the VXLAN backend: its
// bridge for subnet, its VTEP, and paths to peers.
func vxlanNode(t *testing.T, n *testnet.Node, subnet netip.Prefix) (mac net.HardwareAddr, reconcile func([]cluster.Node)) {
	var dp *datapath.Datapath
	n.Do(t, func() error {
		if _, err := bridge.Ensure(names.Bridge, netip.PrefixFrom(subnet.Addr().Next(), subnet.Bits()), 1450); err != nil {
			return err
		}
		if err := testnet.WriteSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		var err error
		dp, err = datapath.New(datapath.Config{Node: n.Name, Backend: cluster.BackendVXLAN, Subnet: subnet,
			UnderlayIP: n.IP, ClusterCIDR: cidr})
		if err != nil {
			return err
		}
		mac, err = dp.EnsureDevice()
		return err
	})
	t.Cleanup(dp.Close)
	return mac, func(peers []cluster.Node) {
		n.Do(t, func() error { _, err := dp.Reconcile(peers); return err })
	}
}

// received reports whether the datagram carrying payload reaches l
// within a short wait; others (late ones of earlier tries) are skipped.
func received(l *net.UDPConn, payload []byte) bool {
	l.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 64)
	for {
		n, _, err := l.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], payload) {
			return true
		}
	}
}

var sent atomic.Int64

// nextPayload makes every test datagram unique.
func nextPayload() []byte { return []byte(fmt.Sprintf("datagram %d", sent.Add(1))) }

func TestVXLANOnlyFromPeersWithTheirOwnPodsAddresses(t *testing.T) {
	// a and b are nodes on the VXLAN backend; x is a host on the same
	// underlay that is no peer.
	topo := testnet.NewTopo(t, "fwv", []string{"a", "b", "x"})
	a, b, x := topo.Nodes["a"], topo.Nodes["b"], topo.Nodes["x"]
	subA, subB := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")
	macA, reconcileA := vxlanNode(t, a, subA)
	macB, reconcileB := vxlanNode(t, b, subB)
	recA := cluster.Node{Name: "a", UnderlayIP: a.IP, Subnet: subA, VTEPMAC: macA.String(), Backend: cluster.BackendVXLAN}
	recB := cluster.Node{Name: "b", UnderlayIP: b.IP, Subnet: subB, VTEPMAC: macB.String(), Backend: cluster.BackendVXLAN}
	reconcileA([]cluster.Node{recA, recB})
	reconcileB([]cluster.Node{recA, recB})
	podA := topo.AddPod(t, a, "pa", netip.MustParsePrefix("10.244.1.2/24"), netip.MustParseAddr("10.244.1.1"), names.Bridge)
	podB := topo.AddPod(t, b, "pb", netip.MustParsePrefix("10.244.2.2/24"), netip.MustParseAddr("10.244.2.1"), names.Bridge)

	var l *net.UDPConn
	podA.Do(t, func() (err error) {
		l, err = net.ListenUDP("udp4", &net.UDPAddr{IP: podA.IP.AsSlice(), Port: 7070})
		return err
	})
	defer l.Close()
	target := netip.AddrPortFrom(podA.IP, 7070)
	forged := func(from *testnet.NS, src netip.Addr) bool {
		t.Helper()
		payload := nextPayload()
		err := from.Do(func(ns.NetNS) error { return fwtest.SendVXLAN(a.IP, fwtest.VXLAN(macA, src, target, payload)) })
		if err != nil {
			t.Fatalf("forge from %s: %v", from.Name, err)
		}
		return received(l, payload)
	}
	// what must arrive gets a few tries: the first one may wait for ARP
	// or a bridge port that is still coming up.
	arrives := func(from *testnet.NS, src netip.Addr) bool {
		t.Helper()
		for i := 0; i < 5; i++ {
			if forged(from, src) {
				return true
			}
		}
		return false
	}

	// Today's hole: a stranger on the underlay reaches a's pod as b's pod.
	if !arrives(x.NS, podB.IP) {
		t.Fatal("without the guard a forged datagram was not delivered: the test cannot see the guard work")
	}

	a.Do(t, func() error {
		if err := firewall.Ensure(cidr); err != nil {
			return err
		}
		// weft preflight, run on a node with Weft, does not take the
		// guard for something that blocks Weft's VXLAN port.
		rs, err := nfeval.Load()
		if err != nil {
			return err
		}
		for _, o := range rs.Verdict(unix.IPPROTO_UDP, names.VXLANPort) {
			if o.Dropped || len(o.CondDrop) > 0 {
				return fmt.Errorf("preflight's view of the guard: UDP %d dropped (%+v)", names.VXLANPort, o)
			}
		}
		return nil
	})
	// Before the first sync no peer is known: nothing is let in.
	if forged(b.NS, podB.IP) {
		t.Error("a datagram from b was delivered before b was a known peer")
	}
	a.Do(t, func() error {
		ch, err := firewall.SyncPeers([]firewall.Peer{{UnderlayIP: b.IP, Subnet: subB}})
		if err == nil && ch.Added != 2 {
			err = fmt.Errorf("SyncPeers added %d elements, want 2", ch.Added)
		}
		return err
	})
	if err := testnet.Echo(podB, podB.IP, podA, podA.IP); err != nil {
		t.Fatalf("pod on b → pod on a through the guard: %v", err)
	}
	if forged(x.NS, podB.IP) {
		t.Error("a stranger's forged datagram was delivered")
	}
	// A peer may carry only its own pods' addresses.
	if forged(b.NS, netip.MustParseAddr("10.244.3.7")) {
		t.Error("peer b's datagram with another subnet's source was delivered")
	}
	if !arrives(b.NS, podB.IP) {
		t.Error("peer b's datagram with its own pod's source was not delivered")
	}
	a.Do(t, func() error {
		drops, err := firewall.Drops()
		if err != nil {
			return err
		}
		// b's datagram before it was a peer, and the stranger's.
		if drops[firewall.DropVXLANNotPeer] != 2 || drops[firewall.DropVXLANInnerSource] != 1 {
			return fmt.Errorf("drops %v, want 2 %s and 1 %s", drops, firewall.DropVXLANNotPeer, firewall.DropVXLANInnerSource)
		}
		return nil
	})

	// Re-syncing the same peers changes nothing; a peer that leaves is
	// let in no more.
	a.Do(t, func() error {
		ch, err := firewall.SyncPeers([]firewall.Peer{{UnderlayIP: b.IP, Subnet: subB}})
		if err == nil && ch != (firewall.Changes{}) {
			err = fmt.Errorf("a repeated SyncPeers changed %+v", ch)
		}
		if err != nil {
			return err
		}
		ch, err = firewall.SyncPeers(nil)
		if err == nil && ch.Removed != 2 {
			err = fmt.Errorf("SyncPeers(none) removed %d elements, want 2", ch.Removed)
		}
		return err
	})
	if forged(b.NS, podB.IP) {
		t.Error("a datagram from b was delivered after b left")
	}
}
