// Package kernelstate snapshots a network namespace's state as sorted
// lines of "kind key=value ..." fields, so that two snapshots can be
// compared and searched: the lab's looks into its nodes and the tests'
// before/after checks read the same picture.
//
// A snapshot holds what Weft owns and what a pod depends on: links,
// addresses, main-table routes, neighbours and forwarding entries put
// there on purpose, and the nftables tables. It leaves out what the
// kernel makes and unmakes by itself, on its own schedule: learned,
// failed and NOARP neighbour entries (such as the entry for an IGMP
// report's group 224.0.0.22, which appears whenever the kernel first
// sends one), learned forwarding entries, multicast addresses and MACs,
// IPv6 link-local addresses and routes, and counters. Without that rule
// two snapshots of a node that nobody touched can differ.
//
// It only reads; it never changes what is in the namespace.
package kernelstate

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// State is a namespace's network state, one item a line, sorted.
type State struct {
	Lines []string
}

// String is the whole state, one item a line.
func (s State) String() string { return strings.Join(s.Lines, "\n") + "\n" }

// Of returns the lines of one kind: "link", "vxlan", "addr", "route",
// "neigh", "fdb" or "nft".
func (s State) Of(kind string) []string {
	var out []string
	for _, l := range s.Lines {
		if strings.HasPrefix(l, kind+" ") {
			out = append(out, l)
		}
	}
	return out
}

// Field returns the value of key in line ("" if it has none).
func Field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// Mentioning returns the lines with a field whose value is one of vals:
// what a node still holds about a given subnet, address or MAC.
func (s State) Mentioning(vals ...string) []string {
	var out []string
	for _, line := range s.Lines {
		for _, f := range strings.Fields(line) {
			_, v, _ := strings.Cut(f, "=")
			if v != "" && matchesAny(v, vals) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

func matchesAny(v string, vals []string) bool {
	for _, want := range vals {
		if want != "" && strings.EqualFold(v, want) {
			return true
		}
	}
	return false
}

// Diff lists the lines only in s ("- ") and only in after ("+ "); it is
// empty when the two are the same.
func (s State) Diff(after State) string {
	in := func(lines []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range lines {
			m[l] = true
		}
		return m
	}
	was, is := in(s.Lines), in(after.Lines)
	var b strings.Builder
	for _, l := range s.Lines {
		if !is[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range after.Lines {
		if !was[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// Take snapshots the network namespace at nsPath (a bind mount such as
// /run/netns/NAME, or /proc/PID/ns/net).
func Take(nsPath string) (State, error) {
	var s State
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error { return s.readNetlink() })
	if err != nil {
		return s, fmt.Errorf("kernel state of %s: %w", nsPath, err)
	}
	nft, err := nftLines(nsPath)
	if err != nil {
		return s, fmt.Errorf("kernel state of %s: %w", nsPath, err)
	}
	s.Lines = append(s.Lines, nft...)
	sort.Strings(s.Lines)
	return s, nil
}

func (s *State) add(format string, args ...any) {
	s.Lines = append(s.Lines, fmt.Sprintf(format, args...))
}

// readNetlink reads links, addresses, routes, neighbours and forwarding
// entries of the calling thread's namespace.
func (s *State) readNetlink() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	byIndex := map[int]string{}
	for _, ln := range links {
		byIndex[ln.Attrs().Index] = ln.Attrs().Name
	}
	for _, ln := range links {
		s.addLink(ln, byIndex)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.IP.To4() == nil {
			continue // fe80::/64, made for every IPv6 link by the kernel
		}
		s.add("addr dev=%s addr=%s", byIndex[a.LinkIndex], a.IPNet)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		s.addRoute(r, byIndex)
	}
	neighs, err := netlink.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neighs {
		// Only entries put there on purpose: the kernel adds NOARP
		// entries for multicast and broadcast destinations as it sends
		// to them, and learns and forgets the rest with traffic.
		if n.State&netlink.NUD_PERMANENT == 0 || n.IP.IsMulticast() {
			continue
		}
		s.add("neigh dev=%s ip=%s lladdr=%s state=permanent", byIndex[n.LinkIndex], n.IP, n.HardwareAddr)
	}
	fdb, err := netlink.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list forwarding entries: %w", err)
	}
	for _, n := range fdb {
		s.addFDB(n, byIndex)
	}
	return nil
}

func (s *State) addLink(ln netlink.Link, byIndex map[int]string) {
	a := ln.Attrs()
	up := a.Flags&unix.IFF_UP != 0
	// The index is there so that a link deleted and made again under the
	// same name shows (a pod's veth falls off a bridge made again).
	s.add("link name=%s index=%d type=%s mac=%s mtu=%d up=%t master=%s", a.Name, a.Index, ln.Type(), a.HardwareAddr, a.MTU, up, byIndex[a.MasterIndex])
	if v, ok := ln.(*netlink.Vxlan); ok {
		s.add("vxlan name=%s vni=%d port=%d learning=%t src=%s dev=%s", a.Name, v.VxlanId, v.Port, v.Learning, v.SrcAddr, byIndex[v.VtepDevIndex])
	}
}

func (s *State) addRoute(r netlink.Route, byIndex map[int]string) {
	dst := "default"
	if r.Dst != nil {
		if r.Dst.IP.IsMulticast() || (r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast()) {
			return // made by the kernel for every IPv6 link
		}
		dst = r.Dst.String()
	}
	onlink := r.Flags&int(netlink.FLAG_ONLINK) != 0
	s.add("route dst=%s gw=%s dev=%s proto=%d scope=%d onlink=%t", dst, ipString(r.Gw), byIndex[r.LinkIndex], r.Protocol, r.Scope, onlink)
}

func (s *State) addFDB(n netlink.Neigh, byIndex map[int]string) {
	// Kept: entries put there on purpose (a VXLAN peer's MAC → underlay
	// address) and the bridge's own port MACs. Left out: what a bridge
	// learns from traffic, and the multicast MACs a device listens on,
	// which follow the groups the kernel joins.
	learned := n.State&netlink.NUD_PERMANENT == 0 && n.IP == nil
	if learned || isMulticastMAC(n.HardwareAddr) {
		return
	}
	s.add("fdb dev=%s mac=%s dst=%s master=%s", byIndex[n.LinkIndex], n.HardwareAddr, ipString(n.IP), byIndex[n.MasterIndex])
}

func isMulticastMAC(mac net.HardwareAddr) bool { return len(mac) > 0 && mac[0]&1 == 1 }

func ipString(ip net.IP) string {
	if a, ok := netip.AddrFromSlice(ip); ok {
		return a.Unmap().String()
	}
	return ""
}
