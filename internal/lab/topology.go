package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netns"
)

// The underlay's address plan. Every lab uses the same addresses: they
// exist only inside the lab's own namespaces, which nothing routes to.
//
//	one segment:  172.30.0.0/24, node N at 172.30.0.N, datastore at .254
//	two segments: 172.30.1.0/24 and 172.30.2.0/24, the router at .253 on
//	              both, the datastore at 172.30.1.254 (reached from segment 2
//	              through the router)
const (
	datastoreHost = 254
	routerHost    = 253
	datastorePort = 2379
	underlayMTU   = 1500
)

// segmentPrefix is the underlay subnet of segment seg (1-based).
func (s *State) segmentPrefix(seg int) netip.Prefix {
	third := byte(seg)
	if s.Segments == 1 {
		third = 0
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, third, 0}), 24)
}

func hostAddr(p netip.Prefix, host int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

// DatastoreIP is the datastore's underlay address.
func (s *State) DatastoreIP() netip.Addr { return hostAddr(s.segmentPrefix(1), datastoreHost) }

func segmentBridge(seg int) string { return fmt.Sprintf("seg%d", seg) }

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// buildUnderlay creates the underlay namespace with one bridge per segment
// and, with two segments, the router namespace between them.
func (s *State) buildUnderlay() error {
	ul, err := netns.Create(s.Underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	err = ul.Do(func(ns.NetNS) error {
		for seg := 1; seg <= s.Segments; seg++ {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = segmentBridge(seg)
			attrs.MTU = underlayMTU
			// A bridge without a MAC of its own takes the lowest of its
			// ports' and changes it when a node joins or leaves: every
			// node's ARP entry for the datastore's address then points
			// nowhere until it expires, and the agents lose etcd for
			// half a minute.
			attrs.HardwareAddr = net.HardwareAddr{0x02, 0x77, 0x1a, 0xb0, 0x00, byte(seg)}
			br := &netlink.Bridge{LinkAttrs: attrs}
			if err := netlink.LinkAdd(br); err != nil {
				return fmt.Errorf("create bridge %s: %w", attrs.Name, err)
			}
			if err := netlink.LinkSetUp(br); err != nil {
				return fmt.Errorf("set %s up: %w", attrs.Name, err)
			}
		}
		// The datastore's address sits on segment 1 only: the underlay
		// namespace itself must not forward between segments, the router
		// does.
		br, err := netlink.LinkByName(segmentBridge(1))
		if err != nil {
			return err
		}
		p := s.segmentPrefix(1)
		if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(s.DatastoreIP(), p.Bits())}); err != nil {
			return fmt.Errorf("add %s to %s: %w", s.DatastoreIP(), br.Attrs().Name, err)
		}
		if s.Segments == 2 {
			if err := addRoute(s.segmentPrefix(2), hostAddr(p, routerHost)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("underlay %s: %w", s.Underlay, err)
	}
	if s.Segments == 2 {
		return s.buildRouter()
	}
	return nil
}

func (s *State) buildRouter() error {
	rt, err := netns.Create(s.Router)
	if err != nil {
		return err
	}
	rt.Close()
	for seg := 1; seg <= 2; seg++ {
		p := s.segmentPrefix(seg)
		if err := s.wire(s.Router, fmt.Sprintf("rt%d", seg), fmt.Sprintf("eth%d", seg), seg, prefixOf(hostAddr(p, routerHost), p)); err != nil {
			return fmt.Errorf("router: %w", err)
		}
	}
	return ns.WithNetNSPath(netns.Path(s.Router), func(ns.NetNS) error {
		return sysctl("net/ipv4/ip_forward", "1")
	})
}

func prefixOf(a netip.Addr, p netip.Prefix) netip.Prefix { return netip.PrefixFrom(a, p.Bits()) }

// wire connects namespace nsName to segment seg: a veth whose underlay end
// (ulName) joins the segment's bridge and whose other end (ifName) holds
// addr, up, in nsName.
func (s *State) wire(nsName, ulName, ifName string, seg int, addr netip.Prefix) error {
	target, err := ns.GetNS(netns.Path(nsName))
	if err != nil {
		return err
	}
	defer target.Close()
	err = ns.WithNetNSPath(netns.Path(s.Underlay), func(ns.NetNS) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = ulName
		attrs.MTU = underlayMTU
		br, err := netlink.LinkByName(segmentBridge(seg))
		if err != nil {
			return fmt.Errorf("find %s: %w", segmentBridge(seg), err)
		}
		attrs.MasterIndex = br.Attrs().Index
		v := &netlink.Veth{LinkAttrs: attrs, PeerName: ifName, PeerNamespace: netlink.NsFd(target.Fd()), PeerMTU: underlayMTU}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("create veth %s/%s: %w", ulName, ifName, err)
		}
		l, err := netlink.LinkByName(ulName)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return err
	}
	return target.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifName, nsName, err)
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(addr.Addr(), addr.Bits())}); err != nil {
			return fmt.Errorf("add %s to %s in %s: %w", addr, ifName, nsName, err)
		}
		return netlink.LinkSetUp(l)
	})
}

// unwire removes a namespace's veth from the underlay (the peer goes with
// it).
func (s *State) unwire(ulName string) error {
	return ns.WithNetNSPath(netns.Path(s.Underlay), func(ns.NetNS) error {
		l, err := netlink.LinkByName(ulName)
		if err != nil {
			return nil
		}
		return netlink.LinkDel(l)
	})
}

func addRoute(dst netip.Prefix, via netip.Addr) error {
	r := &netlink.Route{Dst: ipNet(dst.Addr(), dst.Bits()), Gw: via.AsSlice()}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, via, err)
	}
	return nil
}

// sysctl writes a sysctl of the calling thread's network namespace.
func sysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// buildNode creates node n's namespace and wires it to its segment. The
// node gets a route to the other segment through the router, and no
// default route: nothing in a lab leads out of it.
func (s *State) buildNode(n *NodeState) error {
	nn, err := netns.Create(n.Netns)
	if err != nil {
		return err
	}
	nn.Close()
	p := s.segmentPrefix(n.Segment)
	if err := s.wire(n.Netns, n.Name, "eth0", n.Segment, prefixOf(n.UnderlayIP, p)); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return ns.WithNetNSPath(netns.Path(n.Netns), func(ns.NetNS) error {
		// A Kubernetes node forwards (kubeadm's preflight requires it).
		if err := sysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		if s.Segments == 2 {
			other := 3 - n.Segment
			if err := addRoute(s.segmentPrefix(other), hostAddr(p, routerHost)); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		return nil
	})
}
