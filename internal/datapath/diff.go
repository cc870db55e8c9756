package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// changes is what makes the kernel equal to the plan.
type changes struct {
	delRoutes, setRoutes []netlink.Route
	delNeighs, setNeighs []netlink.Neigh
	delFDB, addFDB       []netlink.Neigh
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
// is still wanted has no moment without its route.
func diff(want desired, h have, vxIndex int) changes {
	var c changes
	seenRoute := map[netip.Prefix]bool{}
	for _, r := range h.routes {
		dst := routeDst(r)
		w, ok := want.routes[dst]
		switch {
		case ok && !seenRoute[dst]:
			seenRoute[dst] = true
			if !sameRoute(r, w) {
				c.setRoutes = append(c.setRoutes, w)
			}
		default: // no peer needs it, or a second route to one subnet
			c.delRoutes = append(c.delRoutes, r)
		}
	}
	for dst, w := range want.routes {
		if !seenRoute[dst] {
			c.setRoutes = append(c.setRoutes, w)
		}
	}

	seenNeigh := map[netip.Addr]bool{}
	for _, n := range h.neighs {
		ip, _ := netip.AddrFromSlice(n.IP.To4())
		mac, ok := want.neighs[ip]
		if !ok {
			c.delNeighs = append(c.delNeighs, n)
			continue
		}
		seenNeigh[ip] = true
		if mac != n.HardwareAddr.String() || n.State&netlink.NUD_PERMANENT == 0 {
			c.setNeighs = append(c.setNeighs, neigh(vxIndex, ip, mac))
		}
	}
	for ip, mac := range want.neighs {
		if !seenNeigh[ip] {
			c.setNeighs = append(c.setNeighs, neigh(vxIndex, ip, mac))
		}
	}

	// An FDB entry is keyed by MAC and destination together: one with a
	// wrong destination is removed and the right one added.
	kept := map[string]bool{}
	for _, n := range h.fdb {
		mac := n.HardwareAddr.String()
		if dst, ok := want.fdb[mac]; ok && n.IP.Equal(net.IP(dst.AsSlice())) && !kept[mac] {
			kept[mac] = true
			continue
		}
		c.delFDB = append(c.delFDB, n)
	}
	for mac, dst := range want.fdb {
		if kept[mac] {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		c.addFDB = append(c.addFDB, netlink.Neigh{LinkIndex: vxIndex, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, HardwareAddr: hw, IP: net.IP(dst.AsSlice())})
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
