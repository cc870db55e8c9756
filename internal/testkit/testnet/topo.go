package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Node is one node namespace with an underlay address on eth0.
type Node struct {
	Name    string // the node's name, e.g. "a"
	NSName  string // its named namespace
	NS      *NS
	IP      netip.Addr
	Segment int
}

// Topo is a test network: a router namespace with one bridge per
// underlay segment, forwarding between them, and node namespaces plugged
// into the segments.
type Topo struct {
	Prefix string // starts every namespace name; the router is Prefix+"-r"
	Router *NS
	Nodes  map[string]*Node
}

// NewTopo builds segments[s] = node names on underlay segment s: node i of
// segment s gets 172.30.<s+1>.<i+1>/24 with a default route via the
// router at 172.30.<s+1>.254. prefix starts every namespace name.
func NewTopo(t testing.TB, prefix string, segments ...[]string) *Topo {
	t.Helper()
	RequireRoot(t)
	tp := &Topo{Prefix: fmt.Sprintf("%s%s%05d", os.Getenv(PrefixEnv), prefix, rand.IntN(100000)), Nodes: map[string]*Node{}}
	r := NamedNS(t, tp.Prefix+"-r")
	tp.Router = r
	if err := r.Do(func(ns.NetNS) error { return WriteSysctl("net/ipv4/ip_forward", "1") }); err != nil {
		t.Fatal(err)
	}
	for s, nodes := range segments {
		br := fmt.Sprintf("br%d", s)
		gw := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, byte(s + 1), 254}), 24)
		err := r.Do(func(ns.NetNS) error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = br
			if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
				return fmt.Errorf("add %s: %w", br, err)
			}
			return addrUp(br, gw)
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range nodes {
			n := &Node{Name: name, NSName: tp.Prefix + "-" + name, Segment: s,
				IP: netip.AddrFrom4([4]byte{172, 30, byte(s + 1), byte(i + 1)})}
			n.NS = NamedNS(t, n.NSName)
			if err := tp.plug(n, br, fmt.Sprintf("v%d-%d", s, i), gw.Addr()); err != nil {
				t.Fatal(err)
			}
			tp.Nodes[name] = n
		}
	}
	return tp
}

// plug wires node n to bridge br of the router with a veth pair.
func (tp *Topo) plug(n *Node, br, host string, gw netip.Addr) error {
	err := tp.Router.Do(func(ns.NetNS) error { return bridgedVeth(host, br, n.NS) })
	if err != nil {
		return err
	}
	return n.NS.Do(func(ns.NetNS) error {
		if err := addrUp("eth0", netip.PrefixFrom(n.IP, 24)); err != nil {
			return err
		}
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())})
	})
}

func addrUp(name string, p netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, name, err)
	}
	return netlink.LinkSetUp(l)
}

// WriteSysctl sets /proc/sys/<key> for the network namespace of the
// calling thread (network sysctls are per namespace).
func WriteSysctl(key, value string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
}

// Do runs fn inside n's namespace and fails the test on error.
func (n *Node) Do(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.NS.Do(func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatalf("in node %s: %v", n.Name, err)
	}
}

// Echo sends a UDP datagram from src (an address in from's namespace) to
// dst (in to's namespace) and back, and checks that the receiver saw src
// as the sender (no NAT on the way).
func Echo(from *Node, src netip.Addr, to *Node, dst netip.Addr) error {
	seen, err := SeenAs(from, src, to, dst, 25)
	if err != nil {
		return err
	}
	if seen != src {
		return fmt.Errorf("%s → %s: the receiver saw the sender as %s (NAT on the way?)", src, dst, seen)
	}
	return nil
}

// SeenAs sends UDP datagrams from src in from's namespace to dst in to's
// namespace until one is answered, and returns the source address the
// receiver saw. It sends at most tries datagrams, one per 200 ms, so that
// ARP and routes can settle.
func SeenAs(from *Node, src netip.Addr, to *Node, dst netip.Addr, tries int) (netip.Addr, error) {
	var conn *net.UDPConn
	err := to.NS.Do(func(ns.NetNS) error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst.AsSlice()})
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listen on %s in %s: %w", dst, to.Name, err)
	}
	defer conn.Close()
	var out *net.UDPConn
	err = from.NS.Do(func(ns.NetNS) error {
		var err error
		out, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, conn.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dial %s from %s in %s: %w", dst, src, from.Name, err)
	}
	defer out.Close()

	go func() { // the echo side, answering with the sender it saw; ends when conn is closed
		buf := make([]byte, 64)
		for {
			_, peer, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			conn.WriteToUDP([]byte(peer.AddrPort().Addr().String()), peer)
		}
	}()
	last := errors.New("no reply")
	for i := 0; i < tries; i++ {
		if _, err := out.Write([]byte("echo")); err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		out.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 64)
		n, err := out.Read(buf)
		if err != nil {
			last = err
			continue
		}
		return netip.ParseAddr(string(buf[:n]))
	}
	return netip.Addr{}, fmt.Errorf("%s (%s) → %s (%s): %w", src, from.Name, dst, to.Name, last)
}

// AddPod makes a pod namespace named like the nodes, with eth0 holding
// addr and a default route via gw, its host end plugged into bridge br of
// node n. (The CNI plugin does this for real pods; tests of the node's
// datapath need only a sender behind the bridge.)
func (tp *Topo) AddPod(t testing.TB, n *Node, name string, addr netip.Prefix, gw netip.Addr, br string) *Node {
	t.Helper()
	p := &Node{Name: name, NSName: tp.Prefix + "-" + name, IP: addr.Addr(), Segment: -1}
	p.NS = NamedNS(t, p.NSName)
	host := "vp-" + name
	if len(host) > 15 {
		host = host[:15]
	}
	err := n.NS.Do(func(ns.NetNS) error { return bridgedVeth(host, br, p.NS) })
	if err != nil {
		t.Fatal(err)
	}
	err = p.NS.Do(func(ns.NetNS) error {
		if err := addrUp("eth0", addr); err != nil {
			return err
		}
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())})
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bridgedVeth makes a veth pair in the current namespace: host joins the
// bridge br and comes up, its peer lands in peer as eth0.
func bridgedVeth(host, br string, peer ns.NetNS) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = host
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peer.Fd()))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", host, err)
	}
	l, err := netlink.LinkByName(host)
	if err != nil {
		return err
	}
	b, err := netlink.LinkByName(br)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(l, b); err != nil {
		return fmt.Errorf("attach %s to %s: %w", host, br, err)
	}
	return netlink.LinkSetUp(l)
}
