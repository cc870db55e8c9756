package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testkit/testnet"
)

// pair makes two namespaces joined by a veth, a at 10.211.0.1/24 and b at
// 10.211.0.2/24, and returns them with b's end of the link, removed at the
// end of the test.
func pair(t *testing.T) (a, b ns.NetNS, bLink string) {
	t.Helper()
	a, b = testnet.NewNS(t, "probe"), testnet.NewNS(t, "probe")
	bLink = "pb"
	testnet.Veth(t, a, "pa", b, bLink)
	if err := a.Do(func(ns.NetNS) error { return addrUp("pa", "10.211.0.1/24") }); err != nil {
		t.Fatal(err)
	}
	if err := b.Do(func(ns.NetNS) error { return addrUp(bLink, "10.211.0.2/24") }); err != nil {
		t.Fatal(err)
	}
	return a, b, bLink
}

func addrUp(link, cidr string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(cidr)
	if err := netlink.AddrAdd(l, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func setLink(n ns.NetNS, link string, up bool) error {
	return n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(l)
		}
		return netlink.LinkSetDown(l)
	})
}

func waitFor(t *testing.T, what string, p *Prober, ok func(Result) bool) Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs := p.Results()
		if len(rs) == 1 && ok(rs[0]) {
			return rs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer never became %s: %+v", what, rs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// respond runs a Responder at 10.211.0.2:9754 in b until the test ends,
// and fails the test if it stops with an error.
func respond(t *testing.T, b ns.NetNS) {
	t.Helper()
	var r *Responder
	if err := b.Do(func(ns.NetNS) (err error) {
		r, err = Listen(netip.MustParseAddrPort("10.211.0.2:9754"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("responder: %v", err)
		}
	})
}

// udpFrom is a UDP socket at 10.211.0.1 in a, closed when the test ends,
// for sending the responder datagrams of any shape.
func udpFrom(t *testing.T, a ns.NetNS) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := a.Do(func(ns.NetNS) (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 211, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// firstBack is the first datagram that comes back to c within 5 s.
func firstBack(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("nothing came back: %v", err)
	}
	return buf[:n]
}

func TestPeerReachableThenCutOffThenBack(t *testing.T) {
	a, b, bLink := pair(t)
	respond(t, b)

	var p *Prober
	if err := a.Do(func(ns.NetNS) (err error) {
		p, err = NewProber(Config{Source: netip.MustParseAddr("10.211.0.1"),
			Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 300 * time.Millisecond})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p.SetPeers(map[string]netip.AddrPort{"wto-b": netip.MustParseAddrPort("10.211.0.2:9754")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("prober: %v", err)
		}
	})
	started := time.Now()
	go func() { done <- p.Run(ctx) }()

	up := waitFor(t, "reachable", p, func(r Result) bool { return r.State == Reachable })
	t.Logf("reachable after %v, %d probes sent, rtt %v", time.Since(started), up.Sent, up.RTT)
	if up.RTT <= 0 || up.Received == 0 || up.Down {
		t.Errorf("reachable peer: %+v", up)
	}

	// Cut the peer off: its link goes down, probes are lost.
	if err := setLink(b, bLink, false); err != nil {
		t.Fatal(err)
	}
	lost := waitFor(t, "unreachable", p, func(r Result) bool { return r.State == Unreachable })
	if lost.LastError == "" {
		t.Errorf("unreachable peer has no reason: %+v", lost)
	}
	down := waitFor(t, "down", p, func(r Result) bool { return r.Down })
	if !down.Since.Equal(lost.Since) {
		t.Errorf("Since moved during the outage: %v then %v", lost.Since, down.Since)
	}
	if p.Down() != 1 {
		t.Errorf("Down() = %d, want 1", p.Down())
	}

	if err := setLink(b, bLink, true); err != nil {
		t.Fatal(err)
	}
	back := waitFor(t, "reachable again", p, func(r Result) bool { return r.State == Reachable })
	if back.Down || back.LastError != "" {
		t.Errorf("recovered peer: %+v", back)
	}

	// Bounded traffic: one probe per peer per interval.
	if elapsed := time.Since(started); back.Sent > uint64(elapsed/(50*time.Millisecond))+2 {
		t.Errorf("sent %d probes in %v at a 50ms interval", back.Sent, elapsed)
	}
}

func TestResponderIgnoresWhatIsNotAProbe(t *testing.T) {
	a, b, _ := pair(t)
	respond(t, b)

	c := udpFrom(t, a)
	to := &net.UDPAddr{IP: net.IPv4(10, 211, 0, 2), Port: 9754}
	junk := make([]byte, packetSize)
	copy(junk, "hello")
	reply := make([]byte, packetSize)
	encode(reply, typeReply, 1, 1) // a reply sent to a responder is not answered either
	for _, pkt := range [][]byte{junk, reply, []byte("short")} {
		if _, err := c.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	// Then a real probe: its answer must be the first thing that comes back.
	req := make([]byte, packetSize)
	encode(req, typeReq, 7, 42)
	if _, err := c.WriteToUDP(req, to); err != nil {
		t.Fatal(err)
	}
	typ, nonce, seq, err := decode(firstBack(t, c))
	if err != nil || typ != typeReply || nonce != 7 || seq != 42 {
		t.Fatalf("first datagram back: type %d nonce %d seq %d err %v", typ, nonce, seq, err)
	}
}
