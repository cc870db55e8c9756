package datapath

import (
	"fmt"
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
	// Peer is the peer the entry is for, "" for a stale one.
	Peer string `json:"peer,omitempty"`
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

// Drift is how the kernel differs from what Reconcile programs for the
// same decisions.
type Drift struct {
	// Missing entries the peers need; Stale entries of Weft's that no
	// peer needs; Wrong entries that exist with other values.
	Missing []Entry `json:"missing"`
	Stale   []Entry `json:"stale"`
	Wrong   []Entry `json:"wrong"`
}

// Clean reports whether the kernel holds exactly what the peers need.
func (d Drift) Clean() bool { return len(d.Missing)+len(d.Stale)+len(d.Wrong) == 0 }

// Plan decides every peer's path as Reconcile would, and changes nothing.
func (d *Datapath) Plan(peers []cluster.Node) ([]PeerPath, error) {
	vx, err := d.device()
	if err != nil {
		return nil, err
	}
	me, err := d.self(vx != nil || d.UsesVXLAN())
	if err != nil {
		return nil, err
	}
	return plan(me, peers, d.lookup), nil
}

// Check compares the kernel with the entries that the decisions paths
// (the agent's own, as its API reports them) need, and changes nothing:
// it is what `weft doctor` runs next to a live agent. It reads the same
// entries Reconcile owns (Weft's routes, the VXLAN device, its
// neighbours and its FDB) and nothing else.
func (d *Datapath) Check(paths []PeerPath) (Drift, error) {
	vx, err := d.device()
	if err != nil {
		return Drift{}, err
	}
	drift, err := d.deviceDrift(vx)
	if err != nil {
		return drift, err
	}
	vxIndex := 0
	if vx != nil {
		vxIndex = vx.Attrs().Index
	}
	// Without the device, want what Reconcile would add once it made one,
	// so that those entries show as missing.
	planIndex := vxIndex
	if planIndex == 0 && d.UsesVXLAN() {
		planIndex = -1
	}
	want := assemble(paths, planIndex, d.linkIndex)
	h, err := d.read(vxIndex)
	if err != nil {
		return drift, err
	}
	for _, c := range diff(want, h, planIndex) {
		e := Entry{Kind: c.Kind, Peer: c.Peer}
		switch c.Kind {
		case KindRoute:
			e.Key = routeDst(c.Route).String()
			e.Want, e.Have = d.describeRoute(c.Route), d.describeRoute(c.OldRoute)
		case KindNeighbour:
			e.Key = c.Neigh.IP.String()
			e.Want, e.Have = describeNeigh(c.Neigh), describeNeigh(c.OldNeigh)
		case KindFDB:
			e.Key = c.Neigh.HardwareAddr.String()
			e.Want, e.Have = "dst "+c.Neigh.IP.String(), "dst "+c.OldNeigh.IP.String()
		}
		switch c.Op {
		case OpAdd:
			e.Have = ""
			if c.Kind != KindRoute {
				e.Want += " on " + names.VXLANDevice
			}
			drift.Missing = append(drift.Missing, e)
		case OpDelete:
			e.Have, e.Want = e.Want, ""
			drift.Stale = append(drift.Stale, e)
		case OpReplace:
			drift.Wrong = append(drift.Wrong, e)
		}
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

func describeNeigh(n netlink.Neigh) string {
	return fmt.Sprintf("lladdr %s %s", n.HardwareAddr, neighState(n.State))
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
