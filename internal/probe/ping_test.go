package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

func setMTU(n ns.NetNS, link string, mtu int) error {
	return n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, mtu)
	})
}

// pingFrom pings the responder at 10.211.0.2 from namespace a.
func pingFrom(t *testing.T, a ns.NetNS, size int) (rtt time.Duration, err error) {
	t.Helper()
	if derr := a.Do(func(ns.NetNS) error {
		rtt, err = Ping(context.Background(), netip.MustParseAddr("10.211.0.1"),
			netip.MustParseAddrPort("10.211.0.2:9754"), size, 500*time.Millisecond)
		return nil
	}); derr != nil {
		t.Fatal(derr)
	}
	return rtt, err
}

// A path that silently drops packets above 1400 bytes (b's end of the link
// takes no more, and no ICMP says so) answers pings up to 1400 bytes, loses
// bigger ones, and SearchMTU finds the limit; a local interface that is too
// small is reported at once with its MTU.
func TestPingFindsTheSilentMTULimit(t *testing.T) {
	a, b, bLink := pair(t)
	respond(t, b)

	// A fresh link may drop the first packets until the kernel has
	// activated it: wait for the first answer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := pingFrom(t, a, MinPingSize)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to a small ping within 5s: %v", err)
		}
	}
	for _, size := range []int{MinPingSize, 1500} {
		if _, err := pingFrom(t, a, size); err != nil {
			t.Fatalf("ping of %d bytes on a 1500-byte path: %v", size, err)
		}
	}
	if err := setMTU(b, bLink, 1400); err != nil {
		t.Fatal(err)
	}
	if _, err := pingFrom(t, a, 1400); err != nil {
		t.Fatalf("ping of 1400 bytes through a 1400-byte link: %v", err)
	}
	// The kernel lets a received frame exceed the MTU by a VLAN tag's 4
	// bytes; beyond that it drops it without a word.
	if _, err := pingFrom(t, a, 1405); !errors.Is(err, ErrNoReply) {
		t.Fatalf("ping of 1405 bytes through a 1400-byte link: %v, want ErrNoReply", err)
	}
	var got int
	if derr := a.Do(func(ns.NetNS) (err error) {
		got, err = SearchMTU(context.Background(), netip.MustParseAddr("10.211.0.1"),
			netip.MustParseAddrPort("10.211.0.2:9754"), MinPingSize, 1500, 1, 300*time.Millisecond, 2)
		return err
	}); derr != nil {
		t.Fatal(derr)
	}
	if got < 1400 || got > 1404 {
		t.Errorf("SearchMTU = %d, want 1400 to 1404", got)
	}

	aLink := bLink[:len(bLink)-1] + "a"
	if err := setMTU(a, aLink, 1300); err != nil {
		t.Fatal(err)
	}
	_, err := pingFrom(t, a, 1400)
	var tb *TooBigError
	if !errors.As(err, &tb) || tb.MTU != 1300 || tb.Size != 1400 {
		t.Fatalf("ping of 1400 bytes out of a 1300-byte link: %v, want TooBigError{1400, 1300}", err)
	}
}

// A sized probe that did not arrive whole (its declared size is not its
// length) is not answered, and a sized probe's answer is small.
func TestSizedProbeMustArriveWhole(t *testing.T) {
	a, b, _ := pair(t)
	respond(t, b)
	c := udpFrom(t, a)
	to := &net.UDPAddr{IP: net.IPv4(10, 211, 0, 2), Port: 9754}
	cut := make([]byte, 1000)
	encodeSized(cut, typeSizedReq, 1200, 9, 1) // claims 1200, carries 1000
	whole := make([]byte, 1000)
	encodeSized(whole, typeSizedReq, 1000, 9, 2)
	for _, pkt := range [][]byte{cut, whole} {
		if _, err := c.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	back := firstBack(t, c)
	h, err := decodeHeader(back)
	if n := len(back); err != nil || h.typ != typeReply || h.seq != 2 || h.size != 1000 || n != packetSize {
		t.Fatalf("first datagram back: %d bytes, %+v, %v; want the %d-byte answer to seq 2 of 1000 bytes", n, h, err, packetSize)
	}
}
