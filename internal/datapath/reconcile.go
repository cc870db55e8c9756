package datapath

import (
	"errors"
	"fmt"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// Result is what one reconcile found and did.
type Result struct {
	Peers []PeerPath `json:"peers"`
	// Routes, Neighbours and FDB count the entries the peers need that
	// are in the kernel now (what failed to be added is not counted).
	Routes     int `json:"routes"`
	Neighbours int `json:"neighbours"`
	FDB        int `json:"fdb"`
	// Added and Removed count kernel changes this reconcile made.
	Added   int `json:"added"`
	Removed int `json:"removed"`
}

// Reconcile makes the kernel hold exactly what peers need: it ensures the
// VXLAN device, decides every peer's path, lists Weft's routes and the
// device's neighbours and FDB entries, and applies the difference: it
// removes what no peer needs any more (peer gone, MAC or subnet changed,
// path changed), replaces what is wrong and adds what is missing. Entries
// that are already right are not touched. A route is added exclusively: a
// route to the same subnet that is not Weft's stays, and the peer's
// route is reported as failed. It goes on past a failing entry and
// returns every failure joined.
func (d *Datapath) Reconcile(peers []cluster.Node) (Result, error) {
	var res Result
	vx, err := d.ensureDevice()
	if err != nil {
		return res, err
	}
	vxIndex := 0
	if vx != nil {
		vxIndex = vx.Attrs().Index
	}
	me, err := d.self(vxIndex != 0)
	if err != nil {
		return res, err
	}
	res.Peers = plan(me, peers, d.lookup)
	want := assemble(res.Peers, vxIndex, d.linkIndex)
	res.Routes, res.Neighbours, res.FDB = len(want.routes), len(want.neighs), len(want.fdb)
	h, err := d.read(vxIndex)
	if err != nil {
		return res, err
	}
	var errs []error
	for _, c := range ordered(diff(want, h, vxIndex)) {
		if err := d.apply(c); err != nil {
			errs = append(errs, err)
			switch {
			case c.Op == OpDelete:
			case c.Kind == KindRoute:
				res.Routes--
			case c.Kind == KindNeighbour:
				res.Neighbours--
			default:
				res.FDB--
			}
			continue
		}
		if c.Op == OpDelete {
			res.Removed++
		} else {
			res.Added++
		}
	}
	return res, errors.Join(errs...)
}

// ordered sorts changes so that no entry is ever used while missing:
// stale routes go before the neighbours they use, then stale neighbours
// and FDB entries; FDB entries and neighbours are set before the routes
// that need them.
func ordered(cs []Change) []Change {
	phase := func(c Change) int {
		switch {
		case c.Op == OpDelete && c.Kind == KindRoute:
			return 0
		case c.Op == OpDelete:
			return 1
		case c.Kind == KindFDB:
			return 2
		case c.Kind == KindNeighbour:
			return 3
		}
		return 4
	}
	sort.SliceStable(cs, func(i, j int) bool { return phase(cs[i]) < phase(cs[j]) })
	return cs
}

// apply makes one change in the kernel.
func (d *Datapath) apply(c Change) error {
	switch c.Kind {
	case KindRoute:
		r := c.Route
		switch c.Op {
		case OpDelete:
			if err := d.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("remove stale route %s: %w", r.Dst, err)
			}
		case OpReplace:
			// Replace matches on the metric too: keep the one of the
			// route that is Weft's, so that no other route is hit.
			r.Priority = c.OldRoute.Priority
			if err := d.h.RouteReplace(&r); err != nil {
				return fmt.Errorf("replace route %s via %s (peer %s): %w", r.Dst, r.Gw, c.Peer, err)
			}
		case OpAdd:
			if err := d.h.RouteAdd(&r); err != nil {
				if errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("route %s for peer %s: a route to %s that is not Weft's is in the way; Weft leaves it alone", r.Dst, c.Peer, r.Dst)
				}
				return fmt.Errorf("add route %s via %s (peer %s): %w", r.Dst, r.Gw, c.Peer, err)
			}
		}
	default:
		n := c.Neigh
		what := family(n)
		switch c.Op {
		case OpDelete:
			if err := d.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove stale %s %s %s on %s: %w", what, n.IP, n.HardwareAddr, names.VXLANDevice, err)
			}
		case OpReplace, OpAdd:
			if c.Op == OpReplace && c.Kind == KindFDB {
				// An FDB entry's destination is part of its key.
				old := c.OldNeigh
				if err := d.h.NeighDel(&old); err != nil && !errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("remove %s %s → %s on %s: %w", what, old.HardwareAddr, old.IP, names.VXLANDevice, err)
				}
			}
			if err := d.h.NeighSet(&n); err != nil {
				return fmt.Errorf("set %s %s ↔ %s on %s (peer %s): %w", what, n.IP, n.HardwareAddr, names.VXLANDevice, c.Peer, err)
			}
		}
	}
	return nil
}

func family(n netlink.Neigh) string {
	if n.Family == unix.AF_BRIDGE {
		return "FDB entry"
	}
	return "neighbour"
}
