package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/weftnet/weft/internal/cluster"
)

// Why a record is refused: the label of weft_peer_records_refused and the
// PeerPath's Refused field. A refused record gets no path and nothing in
// the kernel; an accepted one may still get none when the underlay cannot
// reach it (Refused is then empty).
const (
	RefusedMalformed    = "malformed"       // no IPv4 underlay address or subnet, a bad MAC
	RefusedOwnAddress   = "own-address"     // claims this node's underlay address
	RefusedOutsideCIDR  = "outside-cluster" // not a subnet of the cluster CIDR at its length
	RefusedNotHeld      = "not-lease-holder"
	RefusedProtected    = "protected" // covers this node's subnet, addresses, networks or datastore
	RefusedConflict     = "conflict"  // overlaps the subnet of a record accepted first
	RefusedVTEPMismatch = "vtep-mac"  // VTEP MAC is not the one its underlay address derives
)

// RefusalReasons lists every refusal, for metrics that start at zero.
var RefusalReasons = []string{RefusedMalformed, RefusedOwnAddress, RefusedOutsideCIDR, RefusedNotHeld,
	RefusedProtected, RefusedConflict, RefusedVTEPMismatch}

// self is this node as the decisions see it: its configuration and the
// prefixes it must reach by other means than a peer (its configured
// protected prefixes, its own addresses and connected networks).
type self struct {
	Config
	protected []netip.Prefix
	// vxlan: the node runs, or is about to run, a VXLAN device.
	vxlan bool
}

// adjacency is where the kernel sends a packet for a peer's underlay
// address: directly out of an interface (gw invalid) or through a gateway.
type adjacency struct {
	linkIndex int
	link      string
	gw        netip.Addr
	local     bool
	err       error
}

func (a adjacency) direct() bool {
	return a.err == nil && a.linkIndex != 0 && !a.local && !a.gw.IsValid()
}

func (a adjacency) String() string {
	switch {
	case a.err != nil:
		return fmt.Sprintf("no route: %v", a.err)
	case a.local:
		return "an address of this node"
	case a.gw.IsValid():
		return fmt.Sprintf("reached through gateway %s", a.gw)
	}
	return "on a directly connected network"
}

// vet decides whether a record may get a path at all, from the record
// alone: it returns the refusal and why, or "" for a record to trust.
// Overlaps between peers are the plan's to find (they need every record).
func vet(me self, p cluster.Node) (refused, reason string) {
	switch {
	case !p.UnderlayIP.Is4():
		return RefusedMalformed, fmt.Sprintf("record has no IPv4 underlay address (%q)", p.UnderlayIP)
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4():
		return RefusedMalformed, fmt.Sprintf("record has no IPv4 subnet (%q)", p.Subnet)
	case p.UnderlayIP == me.UnderlayIP:
		return RefusedOwnAddress, "record claims this node's own underlay address"
	case p.Subnet.Overlaps(me.Subnet):
		return RefusedProtected, fmt.Sprintf("subnet %s overlaps this node's %s", p.Subnet, me.Subnet)
	case p.Subnet.Bits() != me.SubnetLen || !me.ClusterCIDR.Contains(p.Subnet.Addr()):
		return RefusedOutsideCIDR, fmt.Sprintf("subnet %s is not a /%d of the cluster CIDR %s", p.Subnet, me.SubnetLen, me.ClusterCIDR)
	case p.NotHeld != "":
		return RefusedNotHeld, fmt.Sprintf("the datastore does not give node %s what its record names: %s", p.Name, p.NotHeld)
	}
	for _, q := range me.protected {
		if p.Subnet.Overlaps(q) {
			return RefusedProtected, fmt.Sprintf("subnet %s overlaps %s, which this node reaches by other means (its addresses, connected networks or datastore)", p.Subnet, q)
		}
	}
	if p.VTEPMAC != "" {
		mac, err := net.ParseMAC(p.VTEPMAC)
		if err != nil {
			return RefusedMalformed, fmt.Sprintf("bad VTEP MAC %q", p.VTEPMAC)
		}
		// The MAC is derived, so a record cannot point another node's
		// MAC (and its FDB entry) at itself.
		if want := VTEPMAC(p.UnderlayIP); mac.String() != want.String() {
			return RefusedVTEPMismatch, fmt.Sprintf("VTEP MAC %s is not %s, the one underlay address %s derives", mac, want, p.UnderlayIP)
		}
	}
	return "", ""
}

// needsLookup reports whether choose needs the adjacency to the peer: not
// when the backend prefers VXLAN and the peer has a VTEP (a route lookup
// per peer is most of a reconcile's cost with many peers).
func needsLookup(me self, p cluster.Node) bool {
	return !(preferVXLAN(me.Backend) && p.VTEPMAC != "")
}

// preferVXLAN: the vxlan backend encapsulates even peers on the segment;
// auto and host-gw route those directly.
func preferVXLAN(b cluster.Backend) bool { return b == cluster.BackendVXLAN }

// choose decides the path to a vetted peer from this node's backend, the
// peer's record and the adjacency to its underlay address.
func choose(me self, p cluster.Node, adj adjacency) (path, reason string) {
	hasVTEP := p.VTEPMAC != ""
	where := fmt.Sprintf("%s is %s", p.UnderlayIP, adj)
	switch {
	case preferVXLAN(me.Backend) && hasVTEP:
		path, reason = PathVXLAN, "backend vxlan"
	case adj.direct():
		path, reason = PathDirect, fmt.Sprintf("backend %s; %s", me.Backend, where)
	case !me.Backend.UsesVXLAN():
		return PathNone, fmt.Sprintf("backend %s needs peers on this node's L2 segment, but %s (use --backend auto or vxlan)", me.Backend, where)
	case !hasVTEP:
		return PathNone, fmt.Sprintf("backend %s: peer runs no VXLAN device and %s", me.Backend, where)
	case adj.local:
		return PathNone, fmt.Sprintf("backend %s: %s", me.Backend, where)
	default:
		path, reason = PathVXLAN, fmt.Sprintf("backend %s; %s", me.Backend, where)
	}
	if path == PathVXLAN && !me.vxlan {
		return PathNone, "this node has no VXLAN device"
	}
	return path, reason
}
