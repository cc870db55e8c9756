package cniplugin

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// cmdGC removes every host-side veth on the network's bridge and releases
// every lease that belongs to no attachment in cni.dev/valid-attachments.
// The veths go first, as in DEL: a released address may be handed to a
// new pod at once, and must not still be held by an orphan.
func cmdGC(args *skel.CmdArgs) error {
	c, err := load(args.StdinData, false)
	if err != nil {
		return err
	}
	valid := map[ipam.Key]bool{}
	keep := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[ipam.Key{ContainerID: a.ContainerID, IfName: a.IfName}] = true
		keep[names.HostVethName(a.ContainerID, a.IfName)] = true
	}
	if err := removeOrphanVeths(c.Bridge, keep); err != nil {
		return err
	}
	store := ipam.OpenForRelease(c.IPAMDir).WithRecovery(recovery(c))
	// A lease recovered from a veth alone is valid when its veth is.
	isValid := func(l ipam.Lease) bool {
		if l.Veth != "" {
			return keep[l.Veth]
		}
		return valid[l.Key()]
	}
	if _, err := store.Retain(isValid); err != nil {
		return withCode(CodeStore, fmt.Errorf("gc leases: %w", err))
	}
	return nil
}

// removeOrphanVeths removes the veths on bridge with weft's prefix that
// are not in keep. A missing bridge has no ports to remove.
func removeOrphanVeths(bridge string, keep map[string]bool) error {
	br, err := netlink.LinkByName(bridge)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gc: look up %s: %w", bridge, err)
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
		if err := netlink.LinkDel(l); err != nil && !netns.IsGone(err) {
			return fmt.Errorf("gc: remove orphan veth %s: %w", a.Name, err)
		}
	}
	return nil
}
