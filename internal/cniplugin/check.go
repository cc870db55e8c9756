package cniplugin

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/names"
)

// cmdCheck verifies that the attachment is as ADD left it: the lease, the
// host end on the bridge, the pod end with its address, MTU and default
// route. The first difference is the error.
func cmdCheck(args *skel.CmdArgs) error {
	c, want, err := loadCheck(args)
	if err != nil {
		return err
	}
	failed := func(format string, a ...any) error {
		return cniError(CodeCheckFailed, "check %s/%s: "+format, append([]any{args.ContainerID, args.IfName}, a...)...)
	}
	if err := checkLease(c, args, want, failed); err != nil {
		return err
	}
	host, err := checkHostEnd(c, args, failed)
	if err != nil {
		return err
	}
	return checkPodEnd(c, args, host, want, failed)
}

// checkFailure makes the error of a check that found the attachment
// incomplete.
type checkFailure func(format string, a ...any) error

// loadCheck reads CHECK's config and the address its prevResult gave the
// pod interface.
func loadCheck(args *skel.CmdArgs) (*Config, netip.Prefix, error) {
	c, err := load(args.StdinData, true)
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	if c.RawPrevResult == nil {
		return nil, netip.Prefix{}, invalidConfig("CHECK needs prevResult")
	}
	if err := version.ParsePrevResult(&c.NetConf); err != nil {
		return nil, netip.Prefix{}, invalidConfig(fmt.Sprintf("prevResult: %v", err))
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, netip.Prefix{}, invalidConfig(fmt.Sprintf("prevResult: %v", err))
	}
	want, err := prevAddr(prev, args.IfName)
	return c, want, err
}

// checkLease checks that the address store holds the attachment's lease
// of the address prevResult names.
func checkLease(c *Config, args *skel.CmdArgs, want netip.Prefix, failed checkFailure) error {
	store, err := openStore(c)
	if err != nil {
		return err
	}
	lease, ok, err := store.Get(args.ContainerID, args.IfName)
	if err != nil {
		return withCode(CodeStore, err)
	}
	if !ok || lease.Addr != want.Addr() {
		return failed("the address store holds no lease of %s for it", want.Addr())
	}
	return nil
}

// checkHostEnd checks that the host end exists, up, on the bridge, and
// returns it.
func checkHostEnd(c *Config, args *skel.CmdArgs, failed checkFailure) (netlink.Link, error) {
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil || br.Type() != "bridge" {
		return nil, failed("bridge %s is missing", c.Bridge)
	}
	hostName := names.HostVethName(args.ContainerID, args.IfName)
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, failed("host veth %s is missing", hostName)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return nil, failed("host veth %s is not attached to %s", hostName, c.Bridge)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return nil, failed("host veth %s is down", hostName)
	}
	return host, nil
}

// checkPodEnd checks the pod end: host's peer, up, with the config's MTU,
// the address and a default route via the gateway.
func checkPodEnd(c *Config, args *skel.CmdArgs, host netlink.Link, want netip.Prefix, failed checkFailure) error {
	pod, err := openPodNS(args.Netns)
	if err != nil {
		return err
	}
	defer pod.Close()
	link, err := pod.h.LinkByName(args.IfName)
	if err != nil {
		return failed("interface %s is missing in %s", args.IfName, args.Netns)
	}
	if !isPair(host, link) {
		return failed("%s in the pod is not the peer of %s", args.IfName, host.Attrs().Name)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return failed("%s is down in the pod", args.IfName)
	}
	if link.Attrs().MTU != c.MTU {
		return failed("%s has MTU %d, want %d", args.IfName, link.Attrs().MTU, c.MTU)
	}
	addrs, err := pod.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses in the pod: %w", err)
	}
	if !hasAddr(addrs, want) {
		return failed("%s does not hold %s", args.IfName, want)
	}
	routes, err := pod.h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes in the pod: %w", err)
	}
	if !hasDefaultVia(routes, c.Gateway) {
		return failed("no default route via %s in the pod", c.Gateway)
	}
	return nil
}

// prevAddr finds the address prevResult gave the pod interface.
func prevAddr(prev *current.Result, ifname string) (netip.Prefix, error) {
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(prev.Interfaces) {
			continue
		}
		iface := prev.Interfaces[*ip.Interface]
		if iface.Name != ifname || iface.Sandbox == "" {
			continue
		}
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ip.Address.Mask.Size()
		return netip.PrefixFrom(a.Unmap(), ones), nil
	}
	return netip.Prefix{}, invalidConfig(fmt.Sprintf("prevResult has no address for %s", ifname))
}

func hasAddr(addrs []netlink.Addr, want netip.Prefix) bool {
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && ip.Unmap() == want.Addr() && ones == want.Bits() {
			return true
		}
	}
	return false
}

func hasDefaultVia(routes []netlink.Route, gw netip.Addr) bool {
	for _, r := range routes {
		isDefault := r.Dst == nil
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			isDefault = ones == 0
		}
		g, ok := netip.AddrFromSlice(r.Gw)
		if isDefault && ok && g.Unmap() == gw {
			return true
		}
	}
	return false
}
