package cniplugin

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
)

// cmdGC releases every lease and removes every host-side veth on the
// network's bridge that belongs to no attachment in
// cni.dev/valid-attachments.
func cmdGC(args *skel.CmdArgs) error {
	c, err := load(args.StdinData, false)
	if err != nil {
		return err
	}
	valid := map[ipam.Key]bool{}
	keep := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[ipam.Key{ContainerID: a.ContainerID, IfName: a.IfName}] = true
		keep[hostVethName(a.ContainerID, a.IfName)] = true
	}
	store := ipam.OpenForRelease(c.IPAMDir)
	if _, err := store.Retain(func(k ipam.Key) bool { return valid[k] }); err != nil {
		return withCode(ErrStore, fmt.Errorf("gc leases: %w", err))
	}
	br, err := netlink.LinkByName(c.Bridge)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gc: look up %s: %w", c.Bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("gc: list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "veth" || a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, names.VethPrefix) || keep[a.Name] {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("gc: remove orphan veth %s: %w", a.Name, err)
		}
	}
	return nil
}
