package lab_test

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A process in a pod, with nothing but a UDP socket, tries to enter the
// overlay: it writes a VXLAN frame (to the receiving node's VTEP MAC,
// with an inner IPv4 packet from an address of its choosing toward a pod
// of that node) as the payload of a datagram to another node's port 4789,
// so that its own node would masquerade it into that node's VXLAN. With
// and without a VID 0 priority tag, posing as a pod of its own node, of
// the receiving node, of a third node, or 8.8.8.8 (only bytes inside the
// frame: nothing leaves the lab); and IPv6 inside VXLAN, to the VTEP's
// link-local address and as a Router Advertisement. Nothing is delivered,
// the receiving node's VTEP gets no IPv6, and the drops are counted. The
// same frames sent by the sending node itself (as a peer) meet the
// receiving node's VXLAN guard, which takes only untagged IPv4.
func TestLabPodsCannotEnterTheOverlayVXLAN(t *testing.T) {
	podsCannotEnterTheOverlay(t, cluster.BackendVXLAN)
}

// With auto on one segment the peers have direct routes, but every node
// still has its VXLAN device, listening.
func TestLabPodsCannotEnterTheOverlayAuto(t *testing.T) {
	podsCannotEnterTheOverlay(t, cluster.BackendAuto)
}

// With host-gw no node has a VXLAN device, and a pod's datagram to a
// VXLAN port outside the pods is dropped all the same: it would be one
// for any VTEP out there.
func TestLabPodsSendNoVXLANOnHostGW(t *testing.T) {
	l := labtest.Up(t, fwConfig(t, cluster.BackendHostGW, 2, 2))
	fullMatrix(t, l)
	n1 := l.Nodes[0]
	c := n1.Pods[1]
	under := underlayAddr(t, l)
	onUnderlay := listenIn(t, l.State.Underlay, "udp4", netip.AddrPortFrom(under, names.VXLANPort))
	other := listenIn(t, l.State.Underlay, "udp4", netip.AddrPortFrom(under, names.VXLANPort+1))
	// The pod reaches the underlay namespace's other port (masqueraded):
	// only the guard can keep the datagram to 4789 from arriving.
	if !deliveredWithin(5, other, func(p []byte) { sendFrom(t, c.Netns, netip.AddrPortFrom(under, names.VXLANPort+1), p) }) {
		t.Fatalf("pod %s does not reach %s at all: the test cannot see the guard work", c.IP, under)
	}
	p := payload("host-gw")
	sendFrom(t, c.Netns, netip.AddrPortFrom(under, names.VXLANPort), p)
	if arrived(onUnderlay, p) {
		t.Errorf("pod %s's datagram to %s:%d arrived", c.IP, under, names.VXLANPort)
	}
	dropsMoved(t, n1, firewall.DropPodVXLAN, 1)
}

func podsCannotEnterTheOverlay(t *testing.T, backend cluster.Backend) {
	l := labtest.Up(t, fwConfig(t, backend, 3, 2))
	fullMatrix(t, l)
	n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2]
	a, c := n1.Pods[0], n1.Pods[1] // c is the attacker, a whom it poses as
	b := n2.Pods[0]
	vtep, err := net.ParseMAC(vtepMAC(t, l, n2.Name))
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(b.IP, 7070)
	rx := listenIn(t, b.Netns, "udp4", target)
	frame := func(src netip.Addr, tagged bool, p []byte) []byte {
		f := fwtest.Ether(vtep, fwtest.EtherIPv4, fwtest.IPv4UDP(src, target, p))
		if tagged {
			f = fwtest.Tagged(f, fwtest.Ether8021Q, 0)
		}
		return fwtest.Encap(f)
	}
	// n1 itself, a peer, sends what the attacker will: it is delivered,
	// so the frame and the listener are right.
	fromN1 := func(p []byte) { sendVXLANFrom(t, n1.Netns, n2.UnderlayIP, frame(a.IP, false, p)) }
	if !deliveredWithin(5, rx, fromN1) {
		t.Fatalf("n1's own VXLAN frame from %s did not reach %s: the test cannot see the guards work", a.IP, b.IP)
	}

	attacks := []struct {
		as     string
		src    netip.Addr
		tagged bool
	}{
		{"pod " + a.IP.String() + " of its own node", a.IP, false},
		{"pod " + a.IP.String() + " of its own node, VID 0 tag", a.IP, true},
		{"pod " + n2.Pods[1].IP.String() + " of the receiving node, VID 0 tag", n2.Pods[1].IP, true},
		{"pod " + n3.Pods[0].IP.String() + " of a third node, VID 0 tag", n3.Pods[0].IP, true},
		{"8.8.8.8, VID 0 tag", netip.MustParseAddr("8.8.8.8"), true},
	}
	podSends := 0
	for _, at := range attacks {
		p := payload("pod as " + at.as)
		sendVXLANFrom(t, c.Netns, n2.UnderlayIP, frame(at.src, at.tagged, p))
		podSends++
		if arrived(rx, p) {
			t.Errorf("pod %s's VXLAN frame to %s posing as %s was delivered", c.IP, n2.Name, at.as)
		}
	}
	// Behind the pod's own node, the receiving node's VXLAN guard: the
	// tagged frames, sent by n1 itself, are refused there.
	nodeSends := 0
	for _, at := range attacks {
		if !at.tagged {
			continue
		}
		p := payload("n1 as " + at.as)
		sendVXLANFrom(t, n1.Netns, n2.UnderlayIP, frame(at.src, at.tagged, p))
		nodeSends++
		if arrived(rx, p) {
			t.Errorf("n1's VXLAN frame posing as %s was delivered", at.as)
		}
	}
	// Anything else outside the pods: the underlay namespace.
	under := underlayAddr(t, l)
	onUnderlay := listenIn(t, l.State.Underlay, "udp4", netip.AddrPortFrom(under, names.VXLANPort))
	p := payload("to the underlay")
	sendFrom(t, c.Netns, netip.AddrPortFrom(under, names.VXLANPort), p)
	podSends++
	if arrived(onUnderlay, p) {
		t.Errorf("pod %s's datagram to %s:%d arrived", c.IP, under, names.VXLANPort)
	}

	// IPv6 inside VXLAN: UDP to the VTEP's link-local address (the one
	// the kernel would give it) and a Router Advertisement, from the pod
	// and from n1.
	ll := fwtest.LinkLocal(vtep)
	rx6 := listenIn(t, n2.Netns, "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), 7071))
	// A device that has a link-local address takes packets to it once
	// duplicate address detection is over: wait for that, so that what
	// the VTEP would take, it takes.
	testnet.Eventually(t, 10*time.Second, "no tentative IPv6 address on "+n2.Name+"'s VTEP", func() (err error) {
		inNetns(t, n2.Netns, func() error { err = noTentativeAddress(); return nil })
		return err
	})
	router := netip.MustParseAddr("fe80::66")
	for _, from := range []string{c.Netns, n1.Netns} {
		p := payload("IPv6 from " + from)
		sendVXLANFrom(t, from, n2.UnderlayIP, fwtest.Encap(fwtest.Ether(vtep, fwtest.EtherIPv6,
			fwtest.IPv6UDP(router, netip.AddrPortFrom(ll, 7071), p))))
		sendVXLANFrom(t, from, n2.UnderlayIP, fwtest.Encap(fwtest.Ether(vtep, fwtest.EtherIPv6,
			fwtest.RouterAdvertisement(router, netip.MustParsePrefix("2001:db8:66::/64")))))
		if arrived(rx6, p) {
			t.Errorf("IPv6 inside VXLAN from %s reached a listener on %s at %s", from, n2.Name, ll)
		}
	}
	podSends += 2
	nodeSends += 2
	// One more of n1's own frames, after the refused ones on the same
	// path: whatever they would have done to n2 is done by now.
	if !deliveredWithin(5, rx, fromN1) {
		t.Errorf("n1's own VXLAN frame from %s is no longer delivered", a.IP)
	}
	inNetns(t, n2.Netns, noIPv6OnTheVTEP)

	dropsMoved(t, n1, firewall.DropPodVXLAN, podSends)
	dropsMoved(t, n2, firewall.DropVXLANInnerType, nodeSends)
}

// fwConfig is a one-segment lab of this file's tests.
func fwConfig(t *testing.T, backend cluster.Backend, nodes, pods int) lab.Config {
	t.Helper()
	cfg := labtest.Config(t, "fwl")
	cfg.Backend, cfg.Segments, cfg.Nodes, cfg.PodsPerNode = backend, 1, nodes, pods
	cfg.ReadyTimeout = 45 * time.Second
	return cfg
}

// underlayAddr is the underlay namespace's address: where the datastore
// listens, outside every node and pod.
func underlayAddr(t *testing.T, l *lab.Lab) netip.Addr {
	t.Helper()
	u, err := url.Parse(l.State.Datastore.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		t.Fatalf("datastore endpoint %q: %v", l.State.Datastore.Endpoint, err)
	}
	return a
}

// listenIn opens a UDP listener on addr in the named namespace, closed
// at the test's end.
func listenIn(t *testing.T, netns, network string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, netns, func() (err error) {
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func sendFrom(t *testing.T, netns string, dst netip.AddrPort, p []byte) {
	t.Helper()
	inNetns(t, netns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(p)
		return err
	})
}

func sendVXLANFrom(t *testing.T, netns string, node netip.Addr, b []byte) {
	t.Helper()
	inNetns(t, netns, func() error { return fwtest.SendVXLAN(node, b) })
}

var payloads atomic.Int64

// payload is a datagram's unique content.
func payload(what string) []byte {
	return []byte(fmt.Sprintf("%d %s", payloads.Add(1), what))
}

// arrived reports whether the datagram carrying p reaches c within a
// second; others (late ones of earlier tries) are skipped.
func arrived(c *net.UDPConn, p []byte) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == string(p) {
			return true
		}
	}
}

// deliveredWithin sends a new datagram with send up to tries times until
// one arrives at c (the first may wait for ARP).
func deliveredWithin(tries int, c *net.UDPConn, send func([]byte)) bool {
	for i := 0; i < tries; i++ {
		p := payload("expected")
		send(p)
		if arrived(c, p) {
			return true
		}
	}
	return false
}

// noIPv6OnTheVTEP fails if the VXLAN device has any IPv6 address or
// route: neither the kernel (a link-local address) nor a Router
// Advertisement (a default route, a SLAAC address) may give it one.
func noIPv6OnTheVTEP() error {
	vx, err := netlink.LinkByName(names.VXLANDevice)
	if err != nil {
		return err
	}
	addrs, err := netlink.AddrList(vx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	routes, err := netlink.RouteList(vx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	if len(addrs) > 0 || len(routes) > 0 {
		return fmt.Errorf("%s has IPv6 addresses %v and routes %v", names.VXLANDevice, addrs, routes)
	}
	return nil
}

// noTentativeAddress fails while the VXLAN device holds an IPv6 address
// that is still being checked for duplicates.
func noTentativeAddress() error {
	vx, err := netlink.LinkByName(names.VXLANDevice)
	if err != nil {
		return err
	}
	addrs, err := netlink.AddrList(vx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			return fmt.Errorf("%s is tentative on %s", a.IPNet, names.VXLANDevice)
		}
	}
	return nil
}

// dropsMoved waits until node's metrics count at least n drops of reason.
func dropsMoved(t *testing.T, n *lab.NodeState, reason string, want int) {
	t.Helper()
	testnet.Eventually(t, 15*time.Second, fmt.Sprintf("%s's %s drops in its metrics", n.Name, reason), func() error {
		if got := dropped(t, n, reason); got < float64(want) {
			return fmt.Errorf("%s counts %v %s drops, want at least %d", n.Name, got, reason, want)
		}
		return nil
	})
}
