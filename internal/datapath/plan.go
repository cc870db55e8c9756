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

// PeerPath is how this node reaches one peer, and why.
type PeerPath struct {
	Name       string       `json:"name"`
	UnderlayIP netip.Addr   `json:"underlayIP"`
	Subnet     netip.Prefix `json:"subnet"`
	Path       string       `json:"path"`
	Reason     string       `json:"reason"`
}

// desired is the complete kernel state that the peer list asks for.
type desired struct {
	routes map[netip.Prefix]netlink.Route
	neighs map[netip.Addr]string // VTEP address → VTEP MAC
	fdb    map[string]netip.Addr // VTEP MAC → underlay address
	peers  []PeerPath
}

// adjacency is where the kernel sends a packet for an underlay address:
// directly out of an interface (gw invalid) or through a gateway.
type adjacency struct {
	linkIndex int
	gw        netip.Addr
	local     bool
	err       error
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
	return a
}

// plan computes the desired state for peers. vxIndex is the VXLAN
// device's index (0 without one).
func (d *Datapath) plan(peers []cluster.Node, vxIndex int) desired {
	want := desired{
		routes: map[netip.Prefix]netlink.Route{},
		neighs: map[netip.Addr]string{},
		fdb:    map[string]netip.Addr{},
	}
	peers = append([]cluster.Node(nil), peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	subnetOwner := owners{}
	macOwner := map[string]string{}
	for _, p := range peers {
		if p.Name == d.cfg.Node {
			continue
		}
		pp := PeerPath{Name: p.Name, UnderlayIP: p.UnderlayIP, Subnet: p.Subnet, Path: PathNone}
		pp.Reason = d.choose(p, &pp, vxIndex, subnetOwner, macOwner, &want)
		want.peers = append(want.peers, pp)
	}
	return want
}

// choose decides one peer's path, adds its entries to want and returns the
// reason for the choice.
func (d *Datapath) choose(p cluster.Node, pp *PeerPath, vxIndex int, subnetOwner owners, macOwner map[string]string, want *desired) string {
	switch {
	case !p.UnderlayIP.Is4():
		return fmt.Sprintf("record has no IPv4 underlay address (%q)", p.UnderlayIP)
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4():
		return fmt.Sprintf("record has no IPv4 subnet (%q)", p.Subnet)
	case p.UnderlayIP == d.cfg.UnderlayIP:
		return "record claims this node's own underlay address"
	case p.Subnet.Overlaps(d.cfg.Subnet):
		return fmt.Sprintf("subnet %s overlaps this node's %s", p.Subnet, d.cfg.Subnet)
	}
	subnet := p.Subnet.Masked()
	if s, owner, ok := subnetOwner.overlapping(subnet); ok {
		return fmt.Sprintf("subnet %s overlaps %s of node %s", subnet, s, owner)
	}

	mac, macErr := net.ParseMAC(p.VTEPMAC)
	hasVTEP := macErr == nil && p.VTEPMAC != ""
	// Where the kernel sends packets for the peer's underlay address; not
	// needed when the backend is VXLAN and the peer has a VTEP (a route
	// lookup per peer is most of a reconcile's cost with many peers).
	var adj adjacency
	if d.cfg.Backend != cluster.BackendVXLAN || !hasVTEP {
		adj = d.lookup(p.UnderlayIP)
	}
	direct := adj.err == nil && adj.linkIndex != 0 && !adj.local && !adj.gw.IsValid()
	var where string
	switch {
	case adj.err != nil:
		where = fmt.Sprintf("no route to %s: %v", p.UnderlayIP, adj.err)
	case adj.local:
		where = fmt.Sprintf("%s is an address of this node", p.UnderlayIP)
	case direct:
		where = fmt.Sprintf("%s is on a directly connected network", p.UnderlayIP)
	case adj.gw.IsValid():
		where = fmt.Sprintf("%s is reached through gateway %s", p.UnderlayIP, adj.gw)
	}
	path, reason := PathNone, ""
	switch d.cfg.Backend {
	case cluster.BackendHostGW:
		if direct {
			path, reason = PathDirect, "backend host-gw; "+where
		} else {
			reason = "backend host-gw needs peers on this node's L2 segment, but " + where + " (use --backend auto or vxlan)"
		}
	case cluster.BackendVXLAN:
		switch {
		case hasVTEP:
			path, reason = PathVXLAN, "backend vxlan"
		case direct:
			path, reason = PathDirect, "peer runs no VXLAN device; "+where
		default:
			reason = "peer runs no VXLAN device and " + where
		}
	default:
		switch {
		case direct:
			path, reason = PathDirect, "auto: "+where
		case hasVTEP && !adj.local:
			path, reason = PathVXLAN, "auto: "+where
		case !hasVTEP:
			reason = "auto: peer runs no VXLAN device and " + where
		default:
			reason = "auto: " + where
		}
	}
	if path == PathVXLAN {
		if vxIndex == 0 {
			return "this node has no VXLAN device"
		}
		if owner, dup := macOwner[mac.String()]; dup {
			return fmt.Sprintf("VTEP MAC %s is also claimed by node %s", mac, owner)
		}
	}

	pp.Path = path
	if path == PathNone {
		return reason
	}
	subnetOwner.add(subnet, p.Name)
	switch path {
	case PathDirect:
		want.routes[subnet] = netlink.Route{
			Dst:       prefixNet(subnet),
			Gw:        net.IP(p.UnderlayIP.AsSlice()),
			LinkIndex: adj.linkIndex,
			Protocol:  names.RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		}
	case PathVXLAN:
		vtep := VTEPAddr(subnet)
		macOwner[mac.String()] = p.Name
		want.routes[subnet] = netlink.Route{
			Dst:       prefixNet(subnet),
			Gw:        net.IP(vtep.AsSlice()),
			LinkIndex: vxIndex,
			Flags:     int(netlink.FLAG_ONLINK),
			Protocol:  names.RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		}
		want.neighs[vtep] = mac.String()
		want.fdb[mac.String()] = p.UnderlayIP
	}
	return reason
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
