package netpolnft

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// bed is one node (n1) whose pods a, b (namespace x) and c (namespace y)
// sit behind bridge weft0 in 10.244.1.0/24, and a second namespace (ext)
// on the underlay that is an outside host (172.30.1.2) and also holds a
// remote pod address, 10.244.2.5 (pod z/r of node n2). Every pod serves a
// TCP and a UDP echo on ports 80 and 81; ext serves TCP 80 on both of its
// addresses.
type bed struct {
	t        testing.TB
	n1, ext  *testnet.Node
	pods     map[string]*testnet.Node
	applier  *Applier
	nodePods []netpol.Pod
}

var (
	ipA    = netip.MustParseAddr("10.244.1.11")
	ipB    = netip.MustParseAddr("10.244.1.12")
	ipC    = netip.MustParseAddr("10.244.1.13")
	ipR    = netip.MustParseAddr("10.244.2.5")
	ipExt  = netip.MustParseAddr("172.30.1.2")
	ipNode = netip.MustParseAddr("10.244.1.1")
)

func newBed(t testing.TB) *bed {
	testnet.RequireRoot(t, "builds network namespaces and nftables tables")
	topo := testnet.NewTopo(t, "np", []string{"n1", "ext"})
	b := &bed{t: t, n1: topo.Nodes["n1"], ext: topo.Nodes["ext"], pods: map[string]*testnet.Node{}, applier: &Applier{}}
	b.n1.Do(t, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "weft0"
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return err
		}
		br, err := netlink.LinkByName("weft0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: prefixNet("10.244.1.1/24")}); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return err
		}
		// Pods on one bridge reach each other through the forward hook
		// only with br_netfilter's call-iptables on (as on every
		// Kubernetes node).
		for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/bridge/bridge-nf-call-iptables", "1"}} {
			if err := testnet.WriteSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return netlink.RouteAdd(&netlink.Route{Dst: prefixNet("10.244.2.0/24"), Gw: net.IP(ipExt.AsSlice())})
	})
	b.ext.Do(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: prefixNet("10.244.2.5/32")}); err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{Dst: prefixNet("10.244.1.0/24"), Gw: net.IP(b.n1.IP.AsSlice())})
	})
	for name, ip := range map[string]netip.Addr{"a": ipA, "b": ipB, "c": ipC} {
		p := topo.AddPod(t, b.n1, name, netip.PrefixFrom(ip, 24), ipNode, "weft0")
		b.pods[name] = p
		for _, port := range []int{80, 81} {
			b.serveTCP(p.NS, port)
			b.serveUDP(p.NS, port)
		}
	}
	b.serveTCP(b.ext.NS, 80)
	b.nodePods = []netpol.Pod{
		{Namespace: "x", Name: "a", IP: ipA, Node: "n1", Labels: map[string]string{"pod": "a"},
			Ports: []netpol.NamedPort{{Name: "web", Protocol: netpol.TCP, Port: 80}}},
		{Namespace: "x", Name: "b", IP: ipB, Node: "n1", Labels: map[string]string{"pod": "b"},
			Ports: []netpol.NamedPort{{Name: "web", Protocol: netpol.TCP, Port: 81}}},
		{Namespace: "y", Name: "c", IP: ipC, Node: "n1", Labels: map[string]string{"pod": "c"}},
		{Namespace: "z", Name: "r", IP: ipR, Node: "n2", Labels: map[string]string{"pod": "r"}},
	}
	return b
}

func prefixNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// input is the bed's cluster with these policies (and, if given, only
// the named pods: a pod left out is one the agent has not seen yet).
func (b *bed) input(policies []netpol.Policy, only ...string) netpol.Input {
	in := netpol.Input{Node: "n1", NodeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		Namespaces: []netpol.Namespace{{Name: "x", Labels: map[string]string{"ns": "x"}},
			{Name: "y", Labels: map[string]string{"ns": "y"}}, {Name: "z", Labels: map[string]string{"ns": "z"}}},
		Policies: policies}
	for _, p := range b.nodePods {
		if len(only) == 0 || contains(only, p.Name) {
			in.Pods = append(in.Pods, p)
		}
	}
	return in
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// apply compiles and applies in n1, as the agent does.
func (b *bed) apply(policies []netpol.Policy, only ...string) Result {
	b.t.Helper()
	var res Result
	b.n1.Do(b.t, func() error {
		var err error
		res, err = b.applier.Apply(netpol.Compile(b.input(policies, only...)))
		return err
	})
	return res
}

func (b *bed) serveTCP(n *testnet.NS, port int) {
	var l net.Listener
	n.Run(b.t, func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	b.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

func (b *bed) serveUDP(n *testnet.NS, port int) {
	var pc net.PacketConn
	n.Run(b.t, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	})
	b.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

const probeTimeout = 400 * time.Millisecond

// connects reports whether a TCP echo from inside n (from src, if valid)
// to dst:port comes back.
func connects(t *testing.T, n *testnet.NS, src, dst netip.Addr, port int) bool {
	t.Helper()
	ok := false
	n.Run(t, func() error {
		d := net.Dialer{Timeout: probeTimeout}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(dst, uint16(port)).String())
		if err != nil {
			return nil
		}
		defer c.Close()
		ok = echoes(c)
		return nil
	})
	return ok
}

// answersUDP reports whether a UDP echo from inside n to dst:port comes
// back (two datagrams at most).
func answersUDP(t *testing.T, n *testnet.NS, dst netip.Addr, port int) bool {
	t.Helper()
	ok := false
	n.Run(t, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(dst, uint16(port)).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range 2 {
			if ok = echoes(c); ok {
				return nil
			}
		}
		return nil
	})
	return ok
}

func echoes(c net.Conn) bool {
	msg := []byte("weft")
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := c.Write(msg); err != nil {
		return false
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err == nil && bytes.Equal(buf, msg)
}

// nft runs the nft tool in n1 (tests only: the product speaks netlink).
func (b *bed) nft(args ...string) string {
	b.t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + b.n1.Path(), "nft"}, args...)...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func removeTable() error { _, err := Remove(); return err }
