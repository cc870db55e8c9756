package cniplugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

func cmdAdd(args *skel.CmdArgs) (err error) {
	c, err := load(args.StdinData, true)
	if err != nil {
		return err
	}
	pod, err := openPodNS(args.Netns)
	if err != nil {
		return err
	}
	defer pod.Close()

	// Add-only: the bridge's addresses and MTU are the agent's to change.
	br, err := bridge.EnsureAddOnly(c.Bridge, netip.PrefixFrom(c.Gateway, c.Subnet.Bits()), c.MTU)
	if errors.Is(err, bridge.ErrNotBridge) {
		return cniError(CodeBridgeConflict, "bridge %v", err)
	}
	if err != nil {
		return err
	}

	store, err := openStore(c)
	if err != nil {
		return err
	}
	lease, existed, err := store.Allocate(args.ContainerID, args.IfName)
	if errors.Is(err, ipam.ErrFull) {
		return cniError(CodeSubnetFull, "allocate an address for %s: %v", args.ContainerID, err)
	}
	if err != nil {
		return withCode(CodeStore, err)
	}
	// A failed ADD leaves nothing behind: the new lease and any veth made
	// here go again. What an earlier, successful ADD made stays for DEL.
	ok := false
	defer func() {
		if !ok && !existed {
			if _, rerr := store.Release(args.ContainerID, args.IfName); rerr != nil {
				err = withRollbackError(err, rerr)
			}
		}
	}()

	hostName := names.HostVethName(args.ContainerID, args.IfName)
	host, podLink, created, err := attach(c, br, pod, args, hostName, lease)
	if err != nil {
		return err
	}
	defer func() {
		if !ok && created {
			if rerr := deleteLinkByName(hostName); rerr != nil && !netns.IsGone(rerr) {
				err = withRollbackError(err, fmt.Errorf("remove %s: %w", hostName, rerr))
			}
		}
	}()
	if err := configurePod(pod, podLink, c, lease, !created); err != nil {
		return err
	}
	// The agent's pod guard drops what a veth it does not know sends:
	// let this pod's MAC and address out before the runtime starts it.
	// (A failed ADD leaves the element; the veth it names is gone, and
	// the agent removes it.)
	if err := firewall.AllowPod(firewall.Pod{Veth: hostName, MAC: podLink.Attrs().HardwareAddr, IP: lease.Addr}); err != nil {
		return err
	}
	ok = true
	noteAddress(args, lease.Addr)
	return types.PrintResult(result(c, args, br, host, podLink, lease), c.CNIVersion)
}

// attach makes the veth pair, or finds the one an earlier ADD of the same
// attachment made. The pod end is created directly inside the pod's
// namespace and the host end joins the bridge as it is made: no move, no
// rename.
func attach(c *Config, br *netlink.Bridge, pod *podNS, args *skel.CmdArgs, hostName string, lease ipam.Lease) (host, podLink netlink.Link, created bool, err error) {
	podLink, err = pod.h.LinkByName(args.IfName)
	if err == nil {
		host, herr := netlink.LinkByName(hostName)
		if herr != nil || !isPair(host, podLink) {
			return nil, nil, false, cniError(CodeIfNameTaken,
				"interface %s already exists in %s and is not weft's attachment of container %s", args.IfName, args.Netns, args.ContainerID)
		}
		// A retried ADD: make sure what the first one did is all there.
		if host.Attrs().MasterIndex != br.Index {
			if err := netlink.LinkSetMasterByIndex(host, br.Index); err != nil {
				return nil, nil, false, fmt.Errorf("attach %s to %s: %w", hostName, c.Bridge, err)
			}
		}
		if host.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(host); err != nil {
				return nil, nil, false, fmt.Errorf("set %s up: %w", hostName, err)
			}
		}
		return host, podLink, false, nil
	}
	if !isNotFound(err) {
		return nil, nil, false, fmt.Errorf("look up %s in %s: %w", args.IfName, args.Netns, err)
	}
	// A host end without its pod end in this namespace is left from an
	// attempt into another namespace: replace it.
	if old, err := netlink.LinkByName(hostName); err == nil && old.Type() == "veth" {
		if err := netlink.LinkDel(old); err != nil && !netns.IsGone(err) {
			return nil, nil, false, fmt.Errorf("remove stale %s: %w", hostName, err)
		}
	}
	spec := vethSpec{
		host: hostName, pod: args.IfName,
		hostMAC: names.HostMAC(args.ContainerID, args.IfName), podMAC: names.PodMAC(lease.Addr),
		mtu: c.MTU, master: br.Index, podNSFd: int(pod.ns.Fd()),
	}
	if err := createVeth(spec); err != nil {
		return nil, nil, false, err
	}
	podLink, err = pod.h.LinkByName(args.IfName)
	if err != nil {
		err = fmt.Errorf("find %s in %s after creating it: %w", args.IfName, args.Netns, err)
		if rerr := deleteLinkByName(hostName); rerr != nil && !netns.IsGone(rerr) {
			err = withRollbackError(err, fmt.Errorf("remove %s: %w", hostName, rerr))
		}
		return nil, nil, false, err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr, la.MTU, la.MasterIndex = hostName, spec.hostMAC, c.MTU, br.Index
	host = &netlink.Veth{LinkAttrs: la}
	return host, podLink, true, nil
}

// configurePod gives the pod end its address and default route and sets
// it up. Each step replaces what is there, so a retried ADD is harmless.
// On an interface an earlier ADD made (existing), any other IPv4 address
// goes: the lease may have changed since (GC, a new subnet), and an old
// address left on the pod would collide with the pod that gets it next.
func configurePod(pod *podNS, link netlink.Link, c *Config, lease ipam.Lease, existing bool) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: lease.Addr.AsSlice(), Mask: net.CIDRMask(c.Subnet.Bits(), 32)}}
	if existing {
		if err := removeOtherAddrs(pod, link, addr); err != nil {
			return err
		}
	}
	if err := pod.h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("add %s to %s in the pod: %w", addr.IPNet, link.Attrs().Name, err)
	}
	if err := pod.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up in the pod: %w", link.Attrs().Name, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
		Gw:        c.Gateway.AsSlice(),
	}
	if err := pod.h.RouteReplace(route); err != nil {
		return fmt.Errorf("add default route via %s in the pod: %w", c.Gateway, err)
	}
	return nil
}

func removeOtherAddrs(pod *podNS, link netlink.Link, keep *netlink.Addr) error {
	addrs, err := pod.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s in the pod: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == keep.IPNet.String() {
			continue
		}
		if err := pod.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale %s from %s in the pod: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	return nil
}

// result is ADD's answer, built from the bridge Ensure returned and the
// links attach made or found, each with its MAC: a retried ADD answers
// exactly as the first one did.
func result(c *Config, args *skel.CmdArgs, br *netlink.Bridge, host, podLink netlink.Link, lease ipam.Lease) *current.Result {
	gw := net.IP(c.Gateway.AsSlice())
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: c.Bridge, Mac: br.HardwareAddr.String()},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String(), Mtu: c.MTU},
			{Name: args.IfName, Mac: podLink.Attrs().HardwareAddr.String(), Mtu: c.MTU, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(2),
			Address:   net.IPNet{IP: lease.Addr.AsSlice(), Mask: net.CIDRMask(c.Subnet.Bits(), 32)},
			Gateway:   gw,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}},
		DNS:    c.DNS,
	}
}

// isPair reports whether host and pod are the two ends of one veth:
// each one's link index is the other's peer.
func isPair(host, pod netlink.Link) bool {
	if host.Type() != "veth" || pod.Type() != "veth" {
		return false
	}
	return host.Attrs().ParentIndex == pod.Attrs().Index && pod.Attrs().ParentIndex == host.Attrs().Index
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
