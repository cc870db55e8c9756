package datapath

import (
	"errors"
	"fmt"

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
// VXLAN device, lists Weft's routes and the device's neighbours and FDB
// entries, removes what no peer needs any more (peer gone, MAC or subnet
// changed, path changed), replaces what is wrong and adds what is
// missing. Entries that are already right are not touched. It goes on past
// a failing entry and returns every failure joined.
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
	want := d.plan(peers, vxIndex)
	res.Peers = want.peers
	res.Routes, res.Neighbours, res.FDB = len(want.routes), len(want.neighs), len(want.fdb)
	h, err := d.read(vxIndex)
	if err != nil {
		return res, err
	}
	c := diff(want, h, vxIndex)

	// Stale first, routes before the neighbours they use; then FDB and
	// neighbours before the routes that need them.
	var errs []error
	for _, r := range c.delRoutes {
		if err := d.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove stale route %s: %w", r.Dst, err))
			continue
		}
		res.Removed++
	}
	for _, n := range append(c.delNeighs, c.delFDB...) {
		if err := d.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove stale %s %s %s on %s: %w", family(n), n.IP, n.HardwareAddr, names.VXLANDevice, err))
			continue
		}
		res.Removed++
	}
	for _, n := range c.addFDB {
		if err := d.h.NeighSet(&n); err != nil {
			errs = append(errs, fmt.Errorf("add FDB entry %s → %s on %s: %w", n.HardwareAddr, n.IP, names.VXLANDevice, err))
			res.FDB--
			continue
		}
		res.Added++
	}
	for _, n := range c.setNeighs {
		if err := d.h.NeighSet(&n); err != nil {
			errs = append(errs, fmt.Errorf("set neighbour %s → %s on %s: %w", n.IP, n.HardwareAddr, names.VXLANDevice, err))
			res.Neighbours--
			continue
		}
		res.Added++
	}
	for _, r := range c.setRoutes {
		if err := d.h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("set route %s via %s: %w", r.Dst, r.Gw, err))
			res.Routes--
			continue
		}
		res.Added++
	}
	return res, errors.Join(errs...)
}

func family(n netlink.Neigh) string {
	if n.Family == unix.AF_BRIDGE {
		return "FDB entry"
	}
	return "neighbour"
}
