// Package bridge owns the node's pod bridge (weft0): it exists, is up, has
// the pods' MTU and holds exactly the subnet's gateway address. Both the
// agent and the CNI plugin call it; it is idempotent and safe when many
// plugin processes call it at once.
package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotBridge means the name is taken by an interface that is not a bridge.
var ErrNotBridge = errors.New("exists and is not a bridge")

// MAC derives the bridge's MAC address from its gateway address. A bridge
// without a fixed MAC takes the lowest MAC of its ports, which changes as
// pods come and go and makes every pod's ARP entry for the gateway stale.
func MAC(gw netip.Addr) net.HardwareAddr {
	a := gw.As4()
	return net.HardwareAddr{0x0e, 0x77, a[0], a[1], a[2], a[3]}
}

// Ensure makes the bridge exist, up, with mtu, holding gw (for example
// 10.244.3.1/24) as its only IPv4 address. A different address left by an
// earlier subnet is removed: keeping it is what makes flannel fail with
// "cni0 already has an IP address different from ...".
func Ensure(name string, gw netip.Prefix, mtu int) (*netlink.Bridge, error) {
	br, err := lookup(name)
	if errors.Is(err, errNotFound) {
		br, err = create(name, gw, mtu)
	}
	if err != nil {
		return nil, err
	}
	if mtu > 0 && br.MTU != mtu {
		if err := netlink.LinkSetMTU(br, mtu); err != nil {
			return nil, fmt.Errorf("set mtu %d on %s: %w", mtu, name, err)
		}
	}
	if err := ensureAddr(br, gw); err != nil {
		return nil, err
	}
	if br.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return br, nil
}

var errNotFound = errors.New("not found")

func lookup(name string) (*netlink.Bridge, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, errNotFound
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%s %w (it is a %s)", name, ErrNotBridge, l.Type())
	}
	return br, nil
}

func create(name string, gw netip.Prefix, mtu int) (*netlink.Bridge, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	attrs.HardwareAddr = MAC(gw.Addr())
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create bridge %s: %w", name, err)
	}
	// Another plugin process may have created it first: use what is there.
	return lookup(name)
}

func ensureAddr(br *netlink.Bridge, gw netip.Prefix) error {
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", br.Name, err)
	}
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(net.IP(gw.Addr().AsSlice())) && ones == gw.Bits() {
			have = true
			continue
		}
		if err := netlink.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, br.Name, err)
		}
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", gw, br.Name, err)
	}
	return nil
}
