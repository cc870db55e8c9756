package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// Kinds of kernel entry a Drift names.
const (
	KindDevice    = "device"
	KindRoute     = "route"
	KindNeighbour = "neighbour"
	KindFDB       = "fdb"
)

// Entry is one kernel entry that differs from what the peers need: Want is
// empty for a stale entry, Have for a missing one.
type Entry struct {
	Kind string `json:"kind"`
	// Key names the entry: the route's destination, the neighbour's
	// address, the FDB entry's MAC, the device's name.
	Key  string `json:"key"`
	Want string `json:"want,omitempty"`
	Have string `json:"have,omitempty"`
}

func (e Entry) String() string {
	switch {
	case e.Have == "":
		return fmt.Sprintf("missing %s %s %s", e.Kind, e.Key, e.Want)
	case e.Want == "":
		return fmt.Sprintf("stale %s %s %s", e.Kind, e.Key, e.Have)
	}
	return fmt.Sprintf("wrong %s %s: have %s, want %s", e.Kind, e.Key, e.Have, e.Want)
}

// Drift is how the kernel differs from what Reconcile would program for
// the same peers.
type Drift struct {
	// Peers is the plan: each peer's path and why.
	Peers []PeerPath `json:"peers"`
	// Missing entries the peers need; Stale entries of Weft's that no
	// peer needs; Wrong entries that exist with other values.
	Missing []Entry `json:"missing"`
	Stale   []Entry `json:"stale"`
	Wrong   []Entry `json:"wrong"`
}

// Clean reports whether the kernel holds exactly what the peers need.
func (d Drift) Clean() bool { return len(d.Missing)+len(d.Stale)+len(d.Wrong) == 0 }

// Check compares the kernel with the plan for peers, the way Reconcile
// does, and changes nothing: it is what `weft doctor` runs next to a live
// agent. It reads the same entries Reconcile owns (Weft's routes, the VXLAN
// device, its neighbours and its FDB) and nothing else.
func (d *Datapath) Check(peers []cluster.Node) (Drift, error) {
	var drift Drift
	vxIndex := 0
	var vx netlink.Link
	link, err := d.h.LinkByName(names.VXLANDevice)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return drift, fmt.Errorf("look up %s: %w", names.VXLANDevice, err)
	default:
		vx = link
	}
	switch {
	case d.UsesVXLAN() && vx == nil:
		drift.Missing = append(drift.Missing, Entry{Kind: KindDevice, Key: names.VXLANDevice,
			Want: fmt.Sprintf("VNI %d port %d local %s", names.VNI, names.VXLANPort, d.cfg.UnderlayIP)})
	case !d.UsesVXLAN() && vx != nil:
		drift.Stale = append(drift.Stale, Entry{Kind: KindDevice, Key: names.VXLANDevice, Have: "present with backend " + string(d.cfg.Backend)})
	case vx != nil:
		if reason := d.mismatch(vx); reason != "" {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: names.VXLANDevice, Have: reason,
				Want: fmt.Sprintf("VNI %d port %d local %s", names.VNI, names.VXLANPort, d.cfg.UnderlayIP)})
		}
		if mac := VTEPMAC(d.cfg.UnderlayIP); vx.Attrs().HardwareAddr.String() != mac.String() {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: names.VXLANDevice + " MAC",
				Have: vx.Attrs().HardwareAddr.String(), Want: mac.String()})
		}
		if mtu := d.PodMTU(); vx.Attrs().MTU != mtu {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: names.VXLANDevice + " MTU",
				Have: fmt.Sprint(vx.Attrs().MTU), Want: fmt.Sprint(mtu)})
		}
		// EnsureDevice leaves exactly the VTEP address on the device: an
		// older subnet's would answer for another node's subnet.
		addrs, err := d.h.AddrList(vx, netlink.FAMILY_V4)
		if err != nil {
			return drift, fmt.Errorf("list addresses of %s: %w", names.VXLANDevice, err)
		}
		held := make([]string, 0, len(addrs))
		for _, a := range addrs {
			held = append(held, a.IPNet.String())
		}
		if want := VTEPAddr(d.cfg.Subnet).String() + "/32"; len(held) != 1 || held[0] != want {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: names.VXLANDevice + " address",
				Have: fmt.Sprint(held), Want: want})
		}
		if vx.Attrs().Flags&net.FlagUp == 0 {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: names.VXLANDevice, Have: "down", Want: "up"})
		}
		vxIndex = vx.Attrs().Index
	}
	// Without the device, plan as Reconcile would once it made one, so
	// that the entries it would add show as missing.
	planIndex := vxIndex
	if planIndex == 0 && d.UsesVXLAN() {
		planIndex = -1
	}
	want := d.plan(peers, planIndex)
	drift.Peers = want.peers
	h, err := d.read(vxIndex)
	if err != nil {
		return drift, err
	}
	// What Reconcile would change, told as entries.
	c := diff(want, h, planIndex)
	haveRoute := map[netip.Prefix]netlink.Route{}
	for _, r := range h.routes {
		haveRoute[routeDst(r)] = r
	}
	for _, r := range c.delRoutes {
		drift.Stale = append(drift.Stale, Entry{Kind: KindRoute, Key: routeDst(r).String(), Have: d.describeRoute(r)})
	}
	for _, w := range c.setRoutes {
		dst := routeDst(w)
		if r, ok := haveRoute[dst]; ok {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindRoute, Key: dst.String(), Have: d.describeRoute(r), Want: d.describeRoute(w)})
		} else {
			drift.Missing = append(drift.Missing, Entry{Kind: KindRoute, Key: dst.String(), Want: d.describeRoute(w)})
		}
	}
	haveNeigh := map[string]netlink.Neigh{}
	for _, n := range h.neighs {
		haveNeigh[n.IP.String()] = n
	}
	describeNeigh := func(n netlink.Neigh) string {
		return fmt.Sprintf("lladdr %s %s", n.HardwareAddr, neighState(n.State))
	}
	for _, n := range c.delNeighs {
		drift.Stale = append(drift.Stale, Entry{Kind: KindNeighbour, Key: n.IP.String(), Have: describeNeigh(n)})
	}
	for _, w := range c.setNeighs {
		if n, ok := haveNeigh[w.IP.String()]; ok {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindNeighbour, Key: w.IP.String(), Have: describeNeigh(n), Want: describeNeigh(w)})
		} else {
			drift.Missing = append(drift.Missing, Entry{Kind: KindNeighbour, Key: w.IP.String(), Want: describeNeigh(w) + " on " + names.VXLANDevice})
		}
	}
	// An FDB entry with a wrong destination is one to delete and one to
	// add for the same MAC: that is one wrong entry.
	added := map[string]netlink.Neigh{}
	for _, w := range c.addFDB {
		added[w.HardwareAddr.String()] = w
	}
	for _, n := range c.delFDB {
		mac := n.HardwareAddr.String()
		if w, ok := added[mac]; ok {
			drift.Wrong = append(drift.Wrong, Entry{Kind: KindFDB, Key: mac, Have: "dst " + n.IP.String(), Want: "dst " + w.IP.String()})
			delete(added, mac)
			continue
		}
		drift.Stale = append(drift.Stale, Entry{Kind: KindFDB, Key: mac, Have: "dst " + n.IP.String()})
	}
	for mac, w := range added {
		drift.Missing = append(drift.Missing, Entry{Kind: KindFDB, Key: mac, Want: "dst " + w.IP.String() + " on " + names.VXLANDevice})
	}
	for _, es := range [][]Entry{drift.Missing, drift.Stale, drift.Wrong} {
		sort.Slice(es, func(i, j int) bool {
			if es[i].Kind != es[j].Kind {
				return es[i].Kind < es[j].Kind
			}
			return es[i].Key < es[j].Key
		})
	}
	return drift, nil
}

// describeRoute renders a route as `ip route` would show its next hop.
func (d *Datapath) describeRoute(r netlink.Route) string {
	dev := fmt.Sprintf("ifindex %d", r.LinkIndex)
	switch {
	case r.LinkIndex < 0:
		dev = names.VXLANDevice
	case r.LinkIndex > 0:
		if l, err := d.h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
	}
	s := fmt.Sprintf("via %s dev %s", r.Gw, dev)
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		s += " onlink"
	}
	if len(r.MultiPath) > 0 {
		s += fmt.Sprintf(" (%d next hops)", len(r.MultiPath))
	}
	return s
}

func neighState(s int) string {
	switch {
	case s&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case s&netlink.NUD_REACHABLE != 0:
		return "reachable"
	case s&netlink.NUD_STALE != 0:
		return "stale"
	case s&netlink.NUD_FAILED != 0:
		return "failed"
	case s&netlink.NUD_INCOMPLETE != 0:
		return "incomplete"
	}
	return fmt.Sprintf("state %#x", s)
}
