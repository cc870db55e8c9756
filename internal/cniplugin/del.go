package cniplugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// cmdDel removes the attachment's veth pair and releases its address. It
// needs neither the pod's namespace (it may be gone) nor the subnet, and
// an attachment that does not exist is not an error.
func cmdDel(args *skel.CmdArgs) error {
	c, err := load(args.StdinData, false)
	if err != nil {
		return err
	}
	hostName := names.HostVethName(args.ContainerID, args.IfName)
	// Deleting the host end takes the pod end with it. The veth goes
	// before the address, so the address is never handed out while the
	// old pod still holds it.
	if err := deleteVeth(hostName); err != nil {
		return err
	}
	store := ipam.OpenForRelease(c.IPAMDir).WithRecovery(recovery(c))
	if _, err := store.Release(args.ContainerID, args.IfName); err != nil {
		return withCode(CodeStore, fmt.Errorf("release the address of %s/%s: %w", args.ContainerID, args.IfName, err))
	}
	return nil
}

func deleteVeth(name string) error {
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("%s is a %s, not weft's veth: not removing it", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !netns.IsGone(err) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
