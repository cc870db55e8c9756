package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// The VXLAN device carries IPv4 pod traffic only, yet the kernel gives
// every new device an IPv6 stack: a link-local address, Router
// Advertisements accepted, SLAAC. Whatever a VXLAN frame carries past the
// firewall's guard would meet that stack, and one Router Advertisement
// would give the node a default route through the overlay. So the device
// has IPv6 off: address generation mode none (set through netlink before
// the device first comes up, so that no link-local address ever exists),
// accept_ra and autoconf 0, and disable_ipv6 1, which also removes any
// address and route the device already had. EnsureDevice sets all of it
// on a new device and repairs an existing one; Check reports a device that
// has any of it on.
//
// When pods get IPv6 over VXLAN, disable_ipv6 becomes 0 on the device
// (the kernel forwards no IPv6 out of a device with it set) and the rest
// stays: the VTEP still makes no address of its own and heeds no router.

// inet6Devconf are the indices into IFLA_INET6_CONF, the device's IPv6
// sysctls as the kernel reports them (enum DEVCONF_* in linux/ipv6.h).
const (
	// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
	addrGenModeNone = 1

	devconfAcceptRA    = 3
	devconfAutoconf    = 5
	devconfDisableIPv6 = 26
)

// vtepIPv6Sysctls are the device's IPv6 sysctls and the values Weft
// wants, in the order they are written: the router and SLAAC are turned
// away before the stack is turned off.
var vtepIPv6Sysctls = []struct {
	name   string
	devcon int
	want   int32
}{
	{"accept_ra", devconfAcceptRA, 0},
	{"autoconf", devconfAutoconf, 0},
	{"disable_ipv6", devconfDisableIPv6, 1},
}

// inet6 is a device's IPv6 state as the kernel reports it.
type inet6 struct {
	// present is false when the device has no IPv6 stack at all (a
	// kernel without IPv6, or an MTU below 1280): nothing to turn off.
	present     bool
	addrGenMode uint8
	conf        map[string]int32 // by sysctl name, those of vtepIPv6Sysctls
}

// off reports whether IPv6 is off on the device as Weft wants it, and
// else what is on.
func (s inet6) off() (bool, string) {
	if !s.present {
		return true, ""
	}
	var on []string
	if s.addrGenMode != addrGenModeNone {
		on = append(on, fmt.Sprintf("addrgenmode %d", s.addrGenMode))
	}
	for _, c := range vtepIPv6Sysctls {
		if v := s.conf[c.name]; v != c.want {
			on = append(on, fmt.Sprintf("%s %d", c.name, v))
		}
	}
	return len(on) == 0, strings.Join(on, ", ")
}

// readInet6 asks the kernel for link's IPv6 state (the inet6 part of
// IFLA_AF_SPEC), in the network namespace of the calling thread.
func readInet6(link netlink.Link) (inet6, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(link.Attrs().Index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return inet6{}, fmt.Errorf("read the IPv6 state of %s: %w", link.Attrs().Name, err)
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return inet6{}, fmt.Errorf("read the IPv6 state of %s: %d answers", link.Attrs().Name, len(msgs))
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return inet6{}, fmt.Errorf("parse the attributes of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK != unix.IFLA_AF_SPEC {
			continue
		}
		fams, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return inet6{}, fmt.Errorf("parse the address families of %s: %w", link.Attrs().Name, err)
		}
		for _, f := range fams {
			if f.Attr.Type&nl.NLA_TYPE_MASK == unix.AF_INET6 {
				return parseInet6(link.Attrs().Name, f.Value)
			}
		}
	}
	return inet6{}, nil
}

func parseInet6(dev string, b []byte) (inet6, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return inet6{}, fmt.Errorf("parse the IPv6 state of %s: %w", dev, err)
	}
	s := inet6{present: true, conf: map[string]int32{}}
	seen := 0
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.IFLA_INET6_ADDR_GEN_MODE:
			if len(a.Value) >= 1 {
				s.addrGenMode = a.Value[0]
				seen++
			}
		case unix.IFLA_INET6_CONF:
			for _, c := range vtepIPv6Sysctls {
				if off := 4 * c.devcon; off+4 <= len(a.Value) {
					s.conf[c.name] = int32(nl.NativeEndian().Uint32(a.Value[off:]))
				}
			}
			seen++
		}
	}
	if seen != 2 || len(s.conf) != len(vtepIPv6Sysctls) {
		return inet6{}, fmt.Errorf("the kernel's IPv6 state of %s lacks its address generation mode or sysctls", dev)
	}
	return s, nil
}

// ensureNoIPv6 turns IPv6 off on the VXLAN device link (see above),
// changing only what is not already off: the address generation mode
// through netlink, the sysctls under procSysNet.
func (d *Datapath) ensureNoIPv6(link netlink.Link) error {
	s, err := readInet6(link)
	if err != nil || !s.present {
		return err
	}
	if s.addrGenMode != addrGenModeNone {
		if err := d.h.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil {
			return fmt.Errorf("set IPv6 address generation mode none on %s: %w", names.VXLANDevice, err)
		}
	}
	dir := filepath.Join(d.procSysNet(), "ipv6", "conf", names.VXLANDevice)
	for _, c := range vtepIPv6Sysctls {
		if s.conf[c.name] == c.want {
			continue
		}
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(strconv.Itoa(int(c.want))), 0o644); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w (is --proc-sys-net the node's net sysctls?)", err)
			}
			return fmt.Errorf("turn IPv6 off on %s (%s = %d): %w", names.VXLANDevice, path, c.want, err)
		}
	}
	return nil
}

func (d *Datapath) procSysNet() string {
	if d.cfg.ProcSysNet == "" {
		return "/proc/sys/net"
	}
	return d.cfg.ProcSysNet
}
