package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureAddOnly is the CNI plugin's half of Ensure: it makes the bridge
// when there is none, sets it up and adds gw when it is missing, but never
// removes an address or changes the MTU of a bridge that exists. Changing
// the bridge is the agent's job: a plugin called with a config that
// disagrees with the node (a stale conflist, a second network) must not
// take the gateway away from the pods already there.
func EnsureAddOnly(name string, gw netip.Prefix, mtu int) (*netlink.Bridge, error) {
	br, err := lookup(name)
	if errors.Is(err, errNotFound) {
		br, err = create(name, gw, mtu)
	}
	if err != nil {
		return nil, err
	}
	if err := addAddr(br, gw); err != nil {
		return nil, err
	}
	if br.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return br, nil
}

// addAddr adds gw to br unless it holds it already.
func addAddr(br *netlink.Bridge, gw netip.Prefix) error {
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", br.Name, err)
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(net.IP(gw.Addr().AsSlice())) && ones == gw.Bits() {
			return nil
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", gw, br.Name, err)
	}
	return nil
}
