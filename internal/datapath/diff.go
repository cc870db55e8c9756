package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// Op is what a Change does to one kernel entry.
type Op string

// Ops of a Change.
const (
	OpAdd     Op = "add"
	OpReplace Op = "replace"
	OpDelete  Op = "delete"
)

// Change is one kernel entry to add, replace or delete: a route, a
// neighbour or an FDB entry (Kind), for the peer it names ("" for a stale
// entry no peer needs). Route or Neigh is the entry as it must be (as it
// is, for a delete); Old is what the kernel holds now, for a replace.
type Change struct {
	Op   Op
	Kind string
	Peer string

	Route, OldRoute netlink.Route
	Neigh, OldNeigh netlink.Neigh
}

// have is Weft's part of the kernel state.
type have struct {
	routes      []netlink.Route
	neighs, fdb []netlink.Neigh
}

func (d *Datapath) read(vxIndex int) (have, error) {
	var h have
	var err error
	if h.routes, err = weftRoutes(d.h); err != nil {
		return h, err
	}
	if vxIndex == 0 {
		return h, nil
	}
	if h.neighs, err = d.h.NeighList(vxIndex, netlink.FAMILY_V4); err != nil {
		return h, fmt.Errorf("list neighbours on %s: %w", names.VXLANDevice, err)
	}
	fdb, err := d.h.NeighList(vxIndex, unix.AF_BRIDGE)
	if err != nil {
		return h, fmt.Errorf("list FDB of %s: %w", names.VXLANDevice, err)
	}
	for _, n := range fdb {
		if n.LinkIndex == vxIndex && n.Flags&netlink.NTF_SELF != 0 {
			h.fdb = append(h.fdb, n) // the device's own table, not a bridge's
		}
	}
	return h, nil
}

// diff compares the plan with the kernel. A route or neighbour that is
// wrong is replaced in place, never removed first, so that a subnet that
// is still wanted has no moment without its route. Only Weft's entries
// are in h (routes with its protocol, entries on its VXLAN device), so
// only those are ever replaced or deleted.
func diff(want desired, h have, vxIndex int) []Change {
	var c []Change
	seenRoute := map[netip.Prefix]bool{}
	for _, r := range h.routes {
		dst := routeDst(r)
		w, ok := want.routes[dst]
		switch {
		case ok && !seenRoute[dst]:
			seenRoute[dst] = true
			if !sameRoute(r, w.v) {
				c = append(c, Change{Op: OpReplace, Kind: KindRoute, Peer: w.peer, Route: w.v, OldRoute: r})
			}
		default: // no peer needs it, or a second route to one subnet
			c = append(c, Change{Op: OpDelete, Kind: KindRoute, Route: r})
		}
	}
	for dst, w := range want.routes {
		if !seenRoute[dst] {
			c = append(c, Change{Op: OpAdd, Kind: KindRoute, Peer: w.peer, Route: w.v})
		}
	}

	seenNeigh := map[netip.Addr]bool{}
	for _, n := range h.neighs {
		ip, _ := netip.AddrFromSlice(n.IP.To4())
		w, ok := want.neighs[ip]
		if !ok || seenNeigh[ip] {
			c = append(c, Change{Op: OpDelete, Kind: KindNeighbour, Neigh: n})
			continue
		}
		seenNeigh[ip] = true
		if w.v != n.HardwareAddr.String() || n.State&netlink.NUD_PERMANENT == 0 {
			c = append(c, Change{Op: OpReplace, Kind: KindNeighbour, Peer: w.peer, Neigh: neigh(vxIndex, ip, w.v), OldNeigh: n})
		}
	}
	for ip, w := range want.neighs {
		if !seenNeigh[ip] {
			c = append(c, Change{Op: OpAdd, Kind: KindNeighbour, Peer: w.peer, Neigh: neigh(vxIndex, ip, w.v)})
		}
	}

	// An FDB entry is keyed by MAC and destination together: one with a
	// wrong destination is replaced by deleting it and adding the right one.
	kept := map[string]bool{}
	wrong := map[string]netlink.Neigh{}
	for _, n := range h.fdb {
		mac := n.HardwareAddr.String()
		w, ok := want.fdb[mac]
		switch {
		case ok && n.IP.Equal(net.IP(w.v.AsSlice())) && !kept[mac]:
			kept[mac] = true
		case ok && !kept[mac] && wrong[mac].HardwareAddr == nil:
			wrong[mac] = n
		default:
			c = append(c, Change{Op: OpDelete, Kind: KindFDB, Neigh: n})
		}
	}
	for mac, w := range want.fdb {
		if kept[mac] {
			if old, ok := wrong[mac]; ok {
				c = append(c, Change{Op: OpDelete, Kind: KindFDB, Neigh: old})
			}
			continue
		}
		hw, _ := net.ParseMAC(mac)
		n := netlink.Neigh{LinkIndex: vxIndex, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, HardwareAddr: hw, IP: net.IP(w.v.AsSlice())}
		if old, ok := wrong[mac]; ok {
			c = append(c, Change{Op: OpReplace, Kind: KindFDB, Peer: w.peer, Neigh: n, OldNeigh: old})
		} else {
			c = append(c, Change{Op: OpAdd, Kind: KindFDB, Peer: w.peer, Neigh: n})
		}
	}
	return c
}

func neigh(vxIndex int, ip netip.Addr, mac string) netlink.Neigh {
	hw, _ := net.ParseMAC(mac)
	return netlink.Neigh{LinkIndex: vxIndex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.IP(ip.AsSlice()), HardwareAddr: hw}
}

func routeDst(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	ip, _ := netip.AddrFromSlice(r.Dst.IP.To4())
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(ip, ones)
}

func sameRoute(have, want netlink.Route) bool {
	onlink := int(netlink.FLAG_ONLINK)
	return have.Gw.Equal(want.Gw) && have.LinkIndex == want.LinkIndex &&
		have.Flags&onlink == want.Flags&onlink && len(have.MultiPath) == 0 &&
		(have.Type == 0 || have.Type == unix.RTN_UNICAST)
}
