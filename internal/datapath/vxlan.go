package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// VTEPMAC derives the VXLAN device's MAC from the node's underlay address.
// A random MAC would change at every reboot or device re-creation, and
// every peer would keep sending to the old one until it noticed (flannel's
// "VTEP MAC changed after reboot" outages).
func VTEPMAC(underlay netip.Addr) net.HardwareAddr {
	a := underlay.As4()
	return net.HardwareAddr{0x0e, 0x76, a[0], a[1], a[2], a[3]}
}

// VTEPAddr is the address the VXLAN device holds for a node subnet: the
// subnet's network address, which no pod ever gets.
func VTEPAddr(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr() }

// EnsureDevice makes the VXLAN device match this node: when the backend
// uses VXLAN it exists with the right VNI, port, local address, MAC and
// MTU, is up and holds the subnet's VTEP address; otherwise it is absent.
// A device that is already right is left alone, so that a restart does not
// interrupt traffic. It returns the VTEP MAC, nil without VXLAN.
func (d *Datapath) EnsureDevice() (net.HardwareAddr, error) {
	link, err := d.ensureDevice()
	if link == nil || err != nil {
		return nil, err
	}
	return VTEPMAC(d.cfg.UnderlayIP), nil
}

// ensureDevice is EnsureDevice returning the device itself (nil without
// VXLAN), so that Reconcile need not look it up a second time.
func (d *Datapath) ensureDevice() (netlink.Link, error) {
	if !d.UsesVXLAN() {
		return nil, removeDevice(d.h)
	}
	mac := VTEPMAC(d.cfg.UnderlayIP)
	mtu := d.PodMTU()
	link, err := d.h.LinkByName(names.VXLANDevice)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", names.VXLANDevice, err)
	}
	if link != nil {
		if reason := d.mismatch(link); reason != "" {
			// VNI, port, local address or underlay device cannot be
			// changed in place: the device must be made again.
			if err := d.h.LinkDel(link); err != nil {
				return nil, fmt.Errorf("remove %s (%s): %w", names.VXLANDevice, reason, err)
			}
			link = nil
		}
	}
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = names.VXLANDevice
		attrs.MTU = mtu
		attrs.HardwareAddr = mac
		vx := &netlink.Vxlan{
			LinkAttrs:    attrs,
			VxlanId:      names.VNI,
			VtepDevIndex: d.underlay.Attrs().Index,
			SrcAddr:      net.IP(d.cfg.UnderlayIP.AsSlice()),
			Port:         names.VXLANPort,
			Learning:     false,
		}
		if err := d.h.LinkAdd(vx); err != nil {
			return nil, fmt.Errorf("create VXLAN device %s (VNI %d, port %d, local %s): %w", names.VXLANDevice, names.VNI, names.VXLANPort, d.cfg.UnderlayIP, err)
		}
		if link, err = d.h.LinkByName(names.VXLANDevice); err != nil {
			return nil, fmt.Errorf("look up %s after creating it: %w", names.VXLANDevice, err)
		}
	}
	// Before the device comes up: a device that is up with IPv6 on has
	// a link-local address at once (see vtep6.go).
	if err := d.ensureNoIPv6(link); err != nil {
		return nil, err
	}
	if link.Attrs().MTU != mtu {
		if err := d.h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", mtu, names.VXLANDevice, err)
		}
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := d.h.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("set MAC %s on %s: %w", mac, names.VXLANDevice, err)
		}
	}
	if err := ensureOnlyAddr(d.h, link, VTEPAddr(d.cfg.Subnet)); err != nil {
		return nil, err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", names.VXLANDevice, err)
		}
	}
	return link, nil
}

// mismatch says why an existing device cannot be kept, "" if it can.
func (d *Datapath) mismatch(link netlink.Link) string {
	vx, ok := link.(*netlink.Vxlan)
	switch {
	case !ok:
		return "it is a " + link.Type() + ", not a VXLAN device"
	case vx.VxlanId != names.VNI:
		return fmt.Sprintf("VNI %d, want %d", vx.VxlanId, names.VNI)
	case vx.Port != names.VXLANPort:
		return fmt.Sprintf("port %d, want %d", vx.Port, names.VXLANPort)
	case !vx.SrcAddr.Equal(net.IP(d.cfg.UnderlayIP.AsSlice())):
		return fmt.Sprintf("local address %s, want %s", vx.SrcAddr, d.cfg.UnderlayIP)
	case vx.VtepDevIndex != d.underlay.Attrs().Index:
		return fmt.Sprintf("underlay device index %d, want %d", vx.VtepDevIndex, d.underlay.Attrs().Index)
	case vx.Learning:
		return "learning is on"
	}
	return ""
}

// ensureOnlyAddr leaves exactly ip/32 on link: the VTEP address of an
// earlier subnet would answer for a subnet that is now another node's.
func ensureOnlyAddr(h *netlink.Handle, link netlink.Link, ip netip.Addr) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(net.IP(ip.AsSlice())) && ones == 32 {
			have = true
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s/32 to %s: %w", ip, link.Attrs().Name, err)
	}
	return nil
}

// removeDevice deletes the VXLAN device if there is one; its neighbours,
// FDB entries and the routes through it go with it.
func removeDevice(h *netlink.Handle) error {
	link, err := h.LinkByName(names.VXLANDevice)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", names.VXLANDevice, err)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove %s: %w", names.VXLANDevice, err)
	}
	return nil
}

func weftRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: names.RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list Weft's routes: %w", err)
	}
	return routes, nil
}

// device is the VXLAN device, nil when there is none.
func (d *Datapath) device() (netlink.Link, error) {
	link, err := d.h.LinkByName(names.VXLANDevice)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", names.VXLANDevice, err)
	}
	return link, nil
}

// deviceDrift is how the VXLAN device (vx, nil when absent) differs from
// what EnsureDevice makes.
func (d *Datapath) deviceDrift(vx netlink.Link) (Drift, error) {
	var drift Drift
	want := fmt.Sprintf("VNI %d port %d local %s", names.VNI, names.VXLANPort, d.cfg.UnderlayIP)
	switch {
	case d.UsesVXLAN() && vx == nil:
		drift.Missing = append(drift.Missing, Entry{Kind: KindDevice, Key: names.VXLANDevice, Want: want})
		return drift, nil
	case !d.UsesVXLAN() && vx != nil:
		drift.Stale = append(drift.Stale, Entry{Kind: KindDevice, Key: names.VXLANDevice, Have: "present with backend " + d.cfg.Backend.String()})
		return drift, nil
	case vx == nil:
		return drift, nil
	}
	wrong := func(key, have, want string) {
		drift.Wrong = append(drift.Wrong, Entry{Kind: KindDevice, Key: key, Have: have, Want: want})
	}
	if reason := d.mismatch(vx); reason != "" {
		wrong(names.VXLANDevice, reason, want)
	}
	if mac := VTEPMAC(d.cfg.UnderlayIP); vx.Attrs().HardwareAddr.String() != mac.String() {
		wrong(names.VXLANDevice+" MAC", vx.Attrs().HardwareAddr.String(), mac.String())
	}
	if mtu := d.PodMTU(); vx.Attrs().MTU != mtu {
		wrong(names.VXLANDevice+" MTU", fmt.Sprint(vx.Attrs().MTU), fmt.Sprint(mtu))
	}
	// EnsureDevice leaves exactly the VTEP address on the device: an
	// older subnet's would answer for another node's subnet.
	addrs, err := d.h.AddrList(vx, netlink.FAMILY_V4)
	if err != nil {
		return drift, fmt.Errorf("list addresses of %s: %w", names.VXLANDevice, err)
	}
	held := make([]string, 0, len(addrs))
	for _, a := range addrs {
		held = append(held, a.IPNet.String())
	}
	if want := VTEPAddr(d.cfg.Subnet).String() + "/32"; len(held) != 1 || held[0] != want {
		wrong(names.VXLANDevice+" address", fmt.Sprint(held), want)
	}
	if vx.Attrs().Flags&net.FlagUp == 0 {
		wrong(names.VXLANDevice, "down", "up")
	}
	if err := d.ipv6Drift(vx, wrong); err != nil {
		return drift, err
	}
	return drift, nil
}

// ipv6Drift reports IPv6 on the VXLAN device vx: an address of any kind,
// or a setting that lets the kernel make one or heed a router.
func (d *Datapath) ipv6Drift(vx netlink.Link, wrong func(key, have, want string)) error {
	s, err := readInet6(vx)
	if err != nil {
		return err
	}
	if ok, on := s.off(); !ok {
		wrong(names.VXLANDevice+" IPv6", "on: "+on, "off: addrgenmode none, accept_ra 0, autoconf 0, disable_ipv6 1")
	}
	addrs, err := d.h.AddrList(vx, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("list IPv6 addresses of %s: %w", names.VXLANDevice, err)
	}
	if len(addrs) > 0 {
		held := make([]string, 0, len(addrs))
		for _, a := range addrs {
			held = append(held, a.IPNet.String())
		}
		wrong(names.VXLANDevice+" IPv6 address", fmt.Sprint(held), "none")
	}
	return nil
}
