package datapath

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// Remove deletes what this package makes on a node, in the calling
// thread's network namespace: the VXLAN device (its neighbours, FDB
// entries and the routes through it go with it), then every route that
// carries Weft's route protocol, in every table and family, so that a
// route left in another table by an older Weft or by hand goes too. It
// returns what it removed; nothing to remove is not an error. A device
// with the VXLAN device's name that is not a VXLAN device is not Weft's
// and is left alone, with an error saying so.
func Remove() ([]string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	var removed []string
	var errs []error
	switch link, err := h.LinkByName(names.VXLANDevice); {
	case netns.IsGone(err):
	case err != nil:
		errs = append(errs, fmt.Errorf("look up %s: %w", names.VXLANDevice, err))
	case link.Type() != "vxlan":
		errs = append(errs, fmt.Errorf("%s is a %s, not Weft's; left alone", names.VXLANDevice, link.Type()))
	default:
		if err := h.LinkDel(link); err != nil && !netns.IsGone(err) {
			errs = append(errs, fmt.Errorf("remove %s: %w", names.VXLANDevice, err))
		} else if err == nil {
			removed = append(removed, "vxlan "+names.VXLANDevice)
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: names.RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return removed, errors.Join(append(errs, fmt.Errorf("list routes with protocol %d: %w", names.RouteProtocol, err))...)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil {
			if !netns.IsGone(err) {
				errs = append(errs, fmt.Errorf("remove route %s table %d: %w", routeName(r), r.Table, err))
			}
			continue
		}
		removed = append(removed, fmt.Sprintf("route %s table %d", routeName(r), r.Table))
	}
	return removed, errors.Join(errs...)
}

func routeName(r netlink.Route) string {
	if r.Dst == nil {
		return "default"
	}
	return r.Dst.String()
}
