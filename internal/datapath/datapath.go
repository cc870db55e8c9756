// Package datapath programs how this node reaches every other node's pod
// subnet, through netlink only: per peer either a direct route via the
// peer's underlay address (host-gw) or a route through the node's single
// VXLAN device (weft.vxlan) with a permanent neighbour and FDB entry.
//
// The VXLAN scheme: each node's VXLAN device holds the .0/32 address of
// the node's pod subnet, and its MAC is derived from the node's underlay
// address, so it is the same after every restart or reboot. A peer's
// subnet is routed "via <peer subnet>.0 onlink dev weft.vxlan"; a permanent
// neighbour entry tells the kernel that <peer subnet>.0 has the peer's VTEP
// MAC, so no ARP is ever sent across the overlay; and an FDB entry tells
// the VXLAN device that the peer's VTEP MAC lives at the peer's underlay
// address, so nothing is flooded and learning stays off. All three are
// derived from the peer's record alone, which is what lets the agent
// compute them all, diff them against the kernel and repair any drift.
//
// A peer's record is input from outside the node and is vetted before it
// gets a path: its subnet must be a subnet of the cluster CIDR at the
// configured length that the datastore shows the peer holding, never
// anything this node must reach by other means (its own subnet and
// addresses, its connected networks, the datastore); its VTEP MAC must be
// the one its underlay address derives. Decisions are pure functions of
// this node, the record and the kernel's adjacency to the peer (decide.go);
// the plan assembles the desired sets from them, diff turns the sets and
// the kernel into typed changes, and Reconcile applies those changes while
// Check reports them.
//
// The package owns the VXLAN device, everything on it, and every route in
// the main table whose protocol is names.RouteProtocol. It adds routes
// exclusively and replaces or removes only routes that carry that
// protocol: it touches no other route, neighbour or interface.
package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/cluster"
)

// Paths a peer's subnet can be reached by.
const (
	PathDirect = "direct"
	PathVXLAN  = "vxlan"
	// PathNone: the peer cannot be reached with this node's backend (the
	// reason says why); nothing is programmed for it.
	PathNone = "none"
)

// Config is this node as the datapath needs it.
type Config struct {
	Node       string
	Backend    cluster.Backend
	Subnet     netip.Prefix
	UnderlayIP netip.Addr
	// ClusterCIDR and SubnetLen bound what a peer may claim: a subnet of
	// ClusterCIDR exactly SubnetLen long (0: the length of Subnet).
	ClusterCIDR netip.Prefix
	SubnetLen   int
	// Protected are prefixes no peer's subnet may overlap besides this
	// node's own addresses and connected networks, which the datapath
	// reads from the kernel: the datastore's addresses, typically.
	Protected []netip.Prefix
	// ProcSysNet is where the node's net sysctls are written (empty:
	// /proc/sys/net), as the agent's --proc-sys-net.
	ProcSysNet string
}

// Datapath programs one node's routes, neighbours and FDB entries.
type Datapath struct {
	// h is a netlink socket opened in the network namespace New ran in;
	// every change goes there, whichever thread makes it.
	h           *netlink.Handle
	cfg         Config
	underlay    netlink.Link
	underlayMTU int
}

// New finds the underlay interface that holds cfg.UnderlayIP, in the
// network namespace of the calling thread, which the Datapath then
// programs. Close releases it.
func New(cfg Config) (*Datapath, error) {
	if !cfg.Backend.Valid() {
		return nil, fmt.Errorf("unknown backend %q (want auto, host-gw or vxlan)", cfg.Backend)
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("node subnet %q is not an IPv4 prefix", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Addr().Is4() {
		return nil, fmt.Errorf("cluster CIDR %q is not an IPv4 prefix", cfg.ClusterCIDR)
	}
	cfg.ClusterCIDR = cfg.ClusterCIDR.Masked()
	if cfg.SubnetLen == 0 {
		cfg.SubnetLen = cfg.Subnet.Bits()
	}
	if !cfg.ClusterCIDR.Contains(cfg.Subnet.Addr()) || cfg.Subnet.Bits() != cfg.SubnetLen {
		return nil, fmt.Errorf("node subnet %s is not a /%d of the cluster CIDR %s", cfg.Subnet, cfg.SubnetLen, cfg.ClusterCIDR)
	}
	link, err := LinkOf(cfg.UnderlayIP)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Datapath{h: h, cfg: cfg, underlay: link, underlayMTU: link.Attrs().MTU}, nil
}

// Close releases the netlink socket; the kernel state stays.
func (d *Datapath) Close() { d.h.Close() }

// UnderlayLink is the interface holding the underlay address.
func (d *Datapath) UnderlayLink() string { return d.underlay.Attrs().Name }

// UnderlayMTU is the MTU of the underlay interface.
func (d *Datapath) UnderlayMTU() int { return d.underlayMTU }

// UsesVXLAN reports whether this node runs a VXLAN device: with backend
// vxlan, and with auto, where any peer may turn out to be off-segment.
func (d *Datapath) UsesVXLAN() bool { return d.cfg.Backend.UsesVXLAN() }

// PodMTU is the MTU pods must use: the underlay's, less the VXLAN overhead
// whenever a pod's packet may be encapsulated.
func (d *Datapath) PodMTU() int {
	return d.cfg.Backend.PodMTU(d.underlayMTU)
}

// LinkOf returns the interface that holds ip.
func LinkOf(ip netip.Addr) (netlink.Link, error) {
	if !ip.IsValid() || !ip.Is4() {
		return nil, fmt.Errorf("underlay address %q is not an IPv4 address", ip)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(ip.AsSlice())) {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("find interface of underlay address %s: %w", ip, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("underlay address %s is not on any interface of this node", ip)
}

// DefaultUnderlayIP is the first IPv4 address of the interface that holds
// the default route.
func DefaultUnderlayIP() (netip.Addr, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := r.LinkIndex
		if idx == 0 && len(r.MultiPath) > 0 {
			idx = r.MultiPath[0].LinkIndex
		}
		link, err := netlink.LinkByIndex(idx)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("find interface of the default route: %w", err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip.IsGlobalUnicast() {
				return ip, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("interface %s holds the default route but no IPv4 address; give --underlay-ip", link.Attrs().Name)
	}
	return netip.Addr{}, errors.New("no default route to take the underlay address from; give --underlay-ip")
}
