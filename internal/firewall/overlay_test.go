package firewall_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// overlayNet is two VXLAN nodes a and b with a pod each, peers of each
// other with the guards on, and x, a host on the underlay that is no
// node.
type overlayNet struct {
	topo       *testnet.Topo
	a, b, x    *testnet.Node
	podA, podB *testnet.Node
	macA, macB net.HardwareAddr
	subA, subB netip.Prefix
	recA, recB cluster.Node
	reconcileA func([]cluster.Node)
	reconcileB func([]cluster.Node)
}

func newOverlayNet(t *testing.T, prefix string) *overlayNet {
	o := &overlayNet{topo: testnet.NewTopo(t, prefix, []string{"a", "b", "x"}),
		subA: netip.MustParsePrefix("10.244.1.0/24"), subB: netip.MustParsePrefix("10.244.2.0/24")}
	o.a, o.b, o.x = o.topo.Nodes["a"], o.topo.Nodes["b"], o.topo.Nodes["x"]
	o.macA, o.reconcileA = vxlanNode(t, o.a, o.subA)
	o.macB, o.reconcileB = vxlanNode(t, o.b, o.subB)
	o.recA = cluster.Node{Name: "a", UnderlayIP: o.a.IP, Subnet: o.subA, VTEPMAC: o.macA.String(), Backend: cluster.BackendVXLAN}
	o.recB = cluster.Node{Name: "b", UnderlayIP: o.b.IP, Subnet: o.subB, VTEPMAC: o.macB.String(), Backend: cluster.BackendVXLAN}
	o.reconcileA([]cluster.Node{o.recA, o.recB})
	o.reconcileB([]cluster.Node{o.recA, o.recB})
	o.podA = o.topo.AddPod(t, o.a, "pa", netip.MustParsePrefix("10.244.1.2/24"), netip.MustParseAddr("10.244.1.1"), names.Bridge)
	o.podB = o.topo.AddPod(t, o.b, "pb", netip.MustParsePrefix("10.244.2.2/24"), netip.MustParseAddr("10.244.2.1"), names.Bridge)
	for _, n := range []struct {
		node *testnet.Node
		peer firewall.Peer
	}{{o.a, firewall.Peer{UnderlayIP: o.b.IP, Subnet: o.subB}}, {o.b, firewall.Peer{UnderlayIP: o.a.IP, Subnet: o.subA}}} {
		n.node.Do(t, func() error {
			if err := firewall.Ensure(cidr); err != nil {
				return err
			}
			_, err := firewall.SyncPeers([]firewall.Peer{n.peer})
			return err
		})
	}
	if err := testnet.Echo(o.podA, o.podA.IP, o.podB, o.podB.IP); err != nil {
		t.Fatalf("pod on a → pod on b: %v", err)
	}
	return o
}

// listen opens a UDP listener on addr in n's namespace, closed at the
// test's end.
func listen(t *testing.T, n *testnet.Node, network string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var l *net.UDPConn
	n.Do(t, func() (err error) {
		l, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l
}

// sendUDP sends one datagram with payload from n's namespace to dst.
func sendUDP(t *testing.T, n *testnet.Node, dst netip.AddrPort, payload []byte) {
	t.Helper()
	n.Do(t, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
}

// receivedFrom is received that also returns the sender's address.
func receivedFrom(l *net.UDPConn, payload []byte) (netip.Addr, bool) {
	l.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 2048)
	for {
		n, from, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			return netip.Addr{}, false
		}
		if string(buf[:n]) == string(payload) {
			return from.Addr().Unmap(), true
		}
	}
}

// A pod never sends an overlay packet: its datagram to a VXLAN port is
// dropped, and counted, on its own node before masquerade would make it
// the node's, whether it goes to another node's VTEP (with a VXLAN frame
// posing as a pod of its node inside), to any other address outside the
// pods', or to its own node's VTEP on any of the node's addresses. A
// pod's datagram to another pod's port 4789 is some application's and
// passes.
func TestPodsSendNoOverlayPackets(t *testing.T) {
	o := newOverlayNet(t, "fwo")
	target := netip.AddrPortFrom(o.podB.IP, 7070)
	l := listen(t, o.podB, "udp4", target)
	forged := netip.MustParseAddr("10.244.1.9") // another pod of a's subnet

	// What the attacker's frame would do if it reached b's VTEP from
	// a: a's own VTEP sends exactly this.
	delivered := false
	for i := 0; i < 5 && !delivered; i++ {
		p := nextPayload()
		sendVXLAN(t, o.a, o.b.IP, fwtest.VXLAN(o.macB, forged, target, p))
		delivered = received(l, p)
	}
	if !delivered {
		t.Fatal("node a's own VXLAN frame did not reach b's pod: the test cannot see the guard work")
	}
	// x listens on its VXLAN port and on another; a's pods reach x's
	// other port through masquerade.
	onX := listen(t, o.x, "udp4", netip.AddrPortFrom(o.x.IP, names.VXLANPort))
	other := listen(t, o.x, "udp4", netip.AddrPortFrom(o.x.IP, names.VXLANPort+1))
	seen := false
	for i := 0; i < 5 && !seen; i++ {
		p := nextPayload()
		sendUDP(t, o.podA, netip.AddrPortFrom(o.x.IP, names.VXLANPort+1), p)
		from, ok := receivedFrom(other, p)
		if ok && from != o.a.IP {
			t.Fatalf("a's pod reached x as %s, not masqueraded to %s", from, o.a.IP)
		}
		seen = ok
	}
	if !seen {
		t.Fatal("a's pod does not reach x at all: the test cannot see the guard work")
	}
	before := drops(t, o.a)

	p := nextPayload()
	sendVXLAN(t, o.podA, o.b.IP, fwtest.VXLAN(o.macB, forged, target, p))
	if received(l, p) {
		t.Errorf("a pod's VXLAN frame to b's VTEP posing as %s was delivered", forged)
	}
	p = nextPayload()
	sendUDP(t, o.podA, netip.AddrPortFrom(o.x.IP, names.VXLANPort), p)
	if from, ok := receivedFrom(onX, p); ok {
		t.Errorf("a pod's datagram to %s:%d arrived (as %s)", o.x.IP, names.VXLANPort, from)
	}
	// Its own node, on the underlay address, the bridge's gateway and
	// the VTEP's address: the node's VXLAN socket listens on all.
	own := []netip.Addr{o.a.IP, netip.MustParseAddr("10.244.1.1"), o.subA.Addr()}
	for _, dst := range own {
		sendVXLAN(t, o.podA, dst, fwtest.VXLAN(o.macA, forged, netip.AddrPortFrom(o.podA.IP, 7070), nextPayload()))
	}
	// Pod to pod on port 4789 is any application's traffic.
	toPod := listen(t, o.podB, "udp4", netip.AddrPortFrom(o.podB.IP, names.VXLANPort))
	arrived := false
	for i := 0; i < 5 && !arrived; i++ {
		p := nextPayload()
		sendUDP(t, o.podA, netip.AddrPortFrom(o.podB.IP, names.VXLANPort), p)
		_, arrived = receivedFrom(toPod, p)
	}
	if !arrived {
		t.Error("a pod's datagram to another pod's port 4789 was not delivered")
	}

	after := drops(t, o.a)
	if n := after[firewall.DropPodVXLAN] - before[firewall.DropPodVXLAN]; n != uint64(2+len(own)) {
		t.Errorf("a counts %d %s drops, want %d (b's VTEP, x, and a's own %d addresses): %v", n, firewall.DropPodVXLAN, 2+len(own), len(own), after)
	}
	if after[firewall.DropVXLANNotPeer] != before[firewall.DropVXLANNotPeer] {
		t.Errorf("a's pod's datagrams to a's VTEP counted as %s: %v", firewall.DropVXLANNotPeer, after)
	}
	if d := drops(t, o.b); d[firewall.DropVXLANInnerSource]+d[firewall.DropVXLANNotPeer]+d[firewall.DropVXLANInnerType] != 0 {
		t.Errorf("b's VXLAN guard saw the pod's frame: %v", d)
	}
}

func sendVXLAN(t *testing.T, n *testnet.Node, to netip.Addr, b []byte) {
	t.Helper()
	if err := n.NS.Do(func(ns.NetNS) error { return fwtest.SendVXLAN(to, b) }); err != nil {
		t.Fatalf("send VXLAN from %s to %s: %v", n.Name, to, err)
	}
}

// A peer's VXLAN frame is let in only as untagged IPv4 from the peer's
// own subnet. A VLAN tag (a VID 0 priority tag, which the kernel would
// strip and then deliver what it wraps; a QinQ tag), ARP, IPv6, a Router
// Advertisement: each is dropped and counted, whatever it carries, even
// with IPv6 turned on on the VTEP behind Weft's back.
func TestVXLANTakesOnlyUntaggedIPv4FromThePeersSubnet(t *testing.T) {
	o := newOverlayNet(t, "fwi")
	target := netip.AddrPortFrom(o.podA.IP, 7070)
	l := listen(t, o.podA, "udp4", target)
	ll := fwtest.LinkLocal(o.macA)
	// a's VTEP as the kernel makes a device unless told otherwise: a
	// link-local address, Router Advertisements and SLAAC heeded.
	o.a.Do(t, func() error {
		for name, v := range map[string]string{"disable_ipv6": "0", "accept_ra": "2", "autoconf": "1"} {
			if err := testnet.WriteSysctl("net/ipv6/conf/"+names.VXLANDevice+"/"+name, v); err != nil {
				return err
			}
		}
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		err = netlink.AddrAdd(vx, &netlink.Addr{IPNet: &net.IPNet{IP: ll.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
		if errors.Is(err, unix.EEXIST) {
			err = nil
		}
		return err
	})
	l6 := listen(t, o.a, "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), 7071))
	arrives := func(frame []byte, payload []byte) bool {
		for i := 0; i < 5; i++ {
			sendVXLAN(t, o.b, o.a.IP, fwtest.Encap(frame))
			if received(l, payload) {
				return true
			}
		}
		return false
	}
	ipv4 := func(src netip.Addr, p []byte) []byte {
		return fwtest.Ether(o.macA, fwtest.EtherIPv4, fwtest.IPv4UDP(src, target, p))
	}

	p := nextPayload()
	if !arrives(ipv4(o.podB.IP, p), p) {
		t.Fatal("b's frame from its own pod was not delivered")
	}
	before := drops(t, o.a)
	refused := []struct {
		what  string
		frame func(p []byte) []byte
	}{
		{"untagged IPv4 from a's own subnet", func(p []byte) []byte { return ipv4(netip.MustParseAddr("10.244.1.7"), p) }},
		{"VID 0 tag around IPv4 from a's own subnet", func(p []byte) []byte {
			return fwtest.Tagged(ipv4(netip.MustParseAddr("10.244.1.7"), p), fwtest.Ether8021Q, 0)
		}},
		{"VID 0 tag around IPv4 from a third subnet", func(p []byte) []byte {
			return fwtest.Tagged(ipv4(netip.MustParseAddr("10.244.3.7"), p), fwtest.Ether8021Q, 0)
		}},
		{"VID 0 tag around IPv4 from 8.8.8.8", func(p []byte) []byte {
			return fwtest.Tagged(ipv4(netip.MustParseAddr("8.8.8.8"), p), fwtest.Ether8021Q, 0)
		}},
		{"VID 0 tag around IPv4 from b's own pod", func(p []byte) []byte {
			return fwtest.Tagged(ipv4(o.podB.IP, p), fwtest.Ether8021Q, 0)
		}},
		{"QinQ tags around IPv4 from a's own subnet", func(p []byte) []byte {
			return fwtest.Tagged(fwtest.Tagged(ipv4(netip.MustParseAddr("10.244.1.7"), p), fwtest.Ether8021Q, 0), fwtest.Ether8021AD, 0)
		}},
	}
	for _, r := range refused {
		p := nextPayload()
		sendVXLAN(t, o.b, o.a.IP, fwtest.Encap(r.frame(p)))
		if received(l, p) {
			t.Errorf("%s: delivered", r.what)
		}
	}
	// IPv6 to the VTEP's link-local address.
	p = nextPayload()
	sendVXLAN(t, o.b, o.a.IP, fwtest.Encap(fwtest.Ether(o.macA, fwtest.EtherIPv6,
		fwtest.IPv6UDP(netip.MustParseAddr("fe80::66"), netip.AddrPortFrom(ll, 7071), p))))
	if _, ok := receivedFrom(l6, p); ok {
		t.Errorf("IPv6 inside VXLAN reached a listener on a at %s", ll)
	}
	// A Router Advertisement.
	sendVXLAN(t, o.b, o.a.IP, fwtest.Encap(fwtest.Ether(o.macA, fwtest.EtherIPv6,
		fwtest.RouterAdvertisement(netip.MustParseAddr("fe80::66"), netip.MustParsePrefix("2001:db8:66::/64")))))
	// ARP for a's VTEP address from a sender b's subnet holds: answered,
	// it would leave a neighbour entry for the sender.
	arpSender := netip.MustParseAddr("10.244.2.99")
	sendVXLAN(t, o.b, o.a.IP, fwtest.Encap(fwtest.Ether(o.macA, fwtest.EtherARP, fwtest.ARPRequest(arpSender, o.subA.Addr()))))

	// A moment for what would have been taken to show (routes, neighbours).
	p = nextPayload()
	if !arrives(ipv4(o.podB.IP, p), p) {
		t.Error("b's frame from its own pod was not delivered after the refused ones")
	}
	o.a.Do(t, func() error { return noIPv6FromTheOverlay(arpSender) })
	after := drops(t, o.a)
	if n := after[firewall.DropVXLANInnerSource] - before[firewall.DropVXLANInnerSource]; n != 1 {
		t.Errorf("a counts %d more %s drops, want 1: %v", n, firewall.DropVXLANInnerSource, after)
	}
	if n, want := after[firewall.DropVXLANInnerType]-before[firewall.DropVXLANInnerType], uint64(len(refused)-1+3); n != want {
		t.Errorf("a counts %d more %s drops, want %d (tagged frames, IPv6, RA, ARP): %v", n, firewall.DropVXLANInnerType, want, after)
	}
}

// noIPv6FromTheOverlay fails if the VXLAN device has an IPv6 route or
// address that a Router Advertisement gave it, or a neighbour entry for
// sender that ARP gave it.
func noIPv6FromTheOverlay(sender netip.Addr) error {
	vx, err := netlink.LinkByName(names.VXLANDevice)
	if err != nil {
		return err
	}
	routes, err := netlink.RouteList(vx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_RA || r.Dst == nil || r.Dst.IP.IsGlobalUnicast() {
			return fmt.Errorf("%s has IPv6 route %s from a Router Advertisement", names.VXLANDevice, r)
		}
	}
	addrs, err := netlink.AddrList(vx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return fmt.Errorf("%s has a SLAAC address %s", names.VXLANDevice, a.IPNet)
		}
	}
	neighs, err := netlink.NeighList(vx.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, n := range neighs {
		if n.IP.Equal(sender.AsSlice()) {
			return fmt.Errorf("%s has a neighbour entry for %s (%s) from ARP", names.VXLANDevice, sender, n.HardwareAddr)
		}
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return fmt.Errorf("no IPv6 in this kernel: the test cannot see the guard work: %w", err)
	}
	return nil
}
