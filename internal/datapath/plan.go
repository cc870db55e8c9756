package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// PeerPath is how this node reaches one peer, and why: the decision for
// one record, and everything the kernel entries for it are made from.
type PeerPath struct {
	Name       string       `json:"name"`
	UnderlayIP netip.Addr   `json:"underlayIP"`
	Subnet     netip.Prefix `json:"subnet"`
	Path       string       `json:"path"`
	Reason     string       `json:"reason"`
	// Refused is set when the record itself was refused (one of the
	// Refused* values); Reason then says why.
	Refused string `json:"refused,omitempty"`
	// VTEPMAC is the MAC programmed for the peer's VTEP (VXLAN path only).
	VTEPMAC string `json:"vtepMAC,omitempty"`
	// Device is the interface a direct route leaves by.
	Device string `json:"device,omitempty"`

	linkIndex int // of Device, for a direct route
}

// owned is a desired entry and the peer it is for.
type owned[T any] struct {
	v    T
	peer string
}

// desired is the complete kernel state that the decisions ask for.
type desired struct {
	routes map[netip.Prefix]owned[netlink.Route]
	neighs map[netip.Addr]owned[string] // VTEP address → VTEP MAC
	fdb    map[string]owned[netip.Addr] // VTEP MAC → underlay address
}

// self is this node for the decisions: its configuration, and what the
// kernel says it reaches by other means than a peer (every address of the
// node and every network connected to it), which no record may take over.
func (d *Datapath) self(vxlan bool) (self, error) {
	me := self{Config: d.cfg, vxlan: vxlan}
	me.protected = append(me.protected, d.cfg.Protected...)
	addrs, err := d.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return me, fmt.Errorf("list this node's addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			me.protected = append(me.protected, netip.PrefixFrom(ip, 32))
		}
	}
	routes, err := d.h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_KERNEL},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return me, fmt.Errorf("list this node's connected networks: %w", err)
	}
	for _, r := range routes {
		if r.Scope == netlink.SCOPE_LINK && r.Dst != nil {
			me.protected = append(me.protected, routeDst(r).Masked())
		}
	}
	return me, nil
}

// linkIndex is the index of the interface named name, 0 when there is none.
func (d *Datapath) linkIndex(name string) int {
	l, err := d.h.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

func (d *Datapath) lookup(ip netip.Addr) adjacency {
	rs, err := d.h.RouteGet(net.IP(ip.AsSlice()))
	if err != nil {
		return adjacency{err: err}
	}
	if len(rs) == 0 {
		return adjacency{err: fmt.Errorf("no route")}
	}
	r := rs[0]
	a := adjacency{linkIndex: r.LinkIndex, local: r.Type == unix.RTN_LOCAL}
	if gw, ok := netip.AddrFromSlice(r.Gw.To4()); ok && r.Gw != nil {
		a.gw = gw
	}
	if l, err := d.h.LinkByIndex(r.LinkIndex); err == nil {
		a.link = l.Attrs().Name
	}
	return a
}

// plan decides every peer's path. Records are vetted first and then
// accepted in order of name, so that which of two overlapping records
// wins does not depend on the order the datastore listed them; a record
// that is not its node's lease is refused before that, so an impostor
// never wins over the lease holder whatever its name sorts as.
func plan(me self, peers []cluster.Node, lookup func(netip.Addr) adjacency) []PeerPath {
	peers = append([]cluster.Node(nil), peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	taken := owners{}
	out := make([]PeerPath, 0, len(peers))
	for _, p := range peers {
		if p.Name == me.Node {
			continue
		}
		pp := PeerPath{Name: p.Name, UnderlayIP: p.UnderlayIP, Subnet: p.Subnet, Path: PathNone}
		pp.Refused, pp.Reason = vet(me, p)
		if pp.Refused == "" {
			subnet := p.Subnet.Masked()
			if s, owner, ok := taken.overlapping(subnet); ok {
				pp.Refused, pp.Reason = RefusedConflict, fmt.Sprintf("subnet %s overlaps %s of node %s", subnet, s, owner)
			} else {
				pp.Subnet = subnet
				var adj adjacency
				if needsLookup(me, p) {
					adj = lookup(p.UnderlayIP)
				}
				pp.Path, pp.Reason = choose(me, p, adj)
				switch pp.Path {
				case PathDirect:
					pp.Device, pp.linkIndex = adj.link, adj.linkIndex
				case PathVXLAN:
					pp.Device, pp.VTEPMAC = names.VXLANDevice, VTEPMAC(p.UnderlayIP).String()
				}
				// A peer the underlay cannot reach keeps its subnet all
				// the same: no later record may take it over.
				taken.add(subnet, p.Name)
			}
		}
		out = append(out, pp)
	}
	return out
}

// assemble turns decisions into the kernel entries they need. vxIndex is
// the VXLAN device's index; linkIndex finds a direct route's interface
// when the decision does not carry it (decisions read back from the API).
func assemble(paths []PeerPath, vxIndex int, linkIndex func(string) int) desired {
	want := desired{
		routes: map[netip.Prefix]owned[netlink.Route]{},
		neighs: map[netip.Addr]owned[string]{},
		fdb:    map[string]owned[netip.Addr]{},
	}
	for _, p := range paths {
		switch p.Path {
		case PathDirect:
			idx := p.linkIndex
			if idx == 0 {
				idx = linkIndex(p.Device)
			}
			want.routes[p.Subnet] = owned[netlink.Route]{peer: p.Name, v: netlink.Route{
				Dst:       prefixNet(p.Subnet),
				Gw:        net.IP(p.UnderlayIP.AsSlice()),
				LinkIndex: idx,
				Protocol:  names.RouteProtocol,
				Table:     unix.RT_TABLE_MAIN,
			}}
		case PathVXLAN:
			vtep := VTEPAddr(p.Subnet)
			want.routes[p.Subnet] = owned[netlink.Route]{peer: p.Name, v: netlink.Route{
				Dst:       prefixNet(p.Subnet),
				Gw:        net.IP(vtep.AsSlice()),
				LinkIndex: vxIndex,
				Flags:     int(netlink.FLAG_ONLINK),
				Protocol:  names.RouteProtocol,
				Table:     unix.RT_TABLE_MAIN,
			}}
			want.neighs[vtep] = owned[string]{peer: p.Name, v: p.VTEPMAC}
			// Two peers may share an underlay address (and so a MAC):
			// the entry is the same for both.
			if _, ok := want.fdb[p.VTEPMAC]; !ok {
				want.fdb[p.VTEPMAC] = owned[netip.Addr]{peer: p.Name, v: p.UnderlayIP}
			}
		}
	}
	return want
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// owners maps the subnets handed out so far to their nodes, by prefix
// length, so that an overlap check is a lookup per length in use (every
// node of a cluster normally has the same one) rather than a scan.
type owners map[int]map[netip.Prefix]string

func (o owners) add(p netip.Prefix, node string) {
	if o[p.Bits()] == nil {
		o[p.Bits()] = map[netip.Prefix]string{}
	}
	o[p.Bits()][p] = node
}

func (o owners) overlapping(p netip.Prefix) (netip.Prefix, string, bool) {
	for bits, m := range o {
		if bits <= p.Bits() {
			q := netip.PrefixFrom(p.Addr(), bits).Masked()
			if node, ok := m[q]; ok {
				return q, node, true
			}
			continue
		}
		for q, node := range m { // longer prefixes inside p: rare
			if p.Contains(q.Addr()) {
				return q, node, true
			}
		}
	}
	return netip.Prefix{}, "", false
}
