package datapath_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// vtepSysctl reads or (with a value) writes one IPv6 sysctl of the VXLAN
// device, in the calling thread's namespace.
func vtepSysctl(name string, value ...string) (string, error) {
	path := "/proc/sys/net/ipv6/conf/" + names.VXLANDevice + "/" + name
	if len(value) > 0 {
		return "", os.WriteFile(path, []byte(value[0]), 0o644)
	}
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// ipv6Off fails unless the VXLAN device holds no IPv6 address and has
// IPv6, Router Advertisements and SLAAC off.
func ipv6Off() error {
	l, err := netlink.LinkByName(names.VXLANDevice)
	if err != nil {
		return err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	if len(addrs) > 0 {
		return fmt.Errorf("%s holds IPv6 addresses %v", names.VXLANDevice, addrs)
	}
	for name, want := range map[string]string{"disable_ipv6": "1", "accept_ra": "0", "autoconf": "0", "addr_gen_mode": "1"} {
		if v, err := vtepSysctl(name); err != nil || v != want {
			return fmt.Errorf("%s %s = %q (%v), want %s", names.VXLANDevice, name, v, err, want)
		}
	}
	return nil
}

// The VXLAN device takes no IPv6 at all: made without a link-local
// address, heeding no router; turned back on behind the agent's back, it
// is reported by Check and turned off again by the next reconcile.
func TestVXLANDeviceHasNoIPv6(t *testing.T) {
	c := &testNet{topo: testnet.NewTopo(t, "fwd", []string{"a", "b"}), dps: map[string]*datapath.Datapath{}, records: map[string]cluster.Node{}}
	for i, n := range []string{"a", "b"} {
		c.add(t, n, cluster.BackendVXLAN, subnetOf(i+1))
	}
	peers := c.peers()
	c.reconcile(t, "a", peers)
	c.reconcile(t, "b", peers)
	a := c.topo.Nodes["a"]
	a.Do(t, ipv6Off)
	if d := c.check(t, "a"); !d.Clean() {
		t.Fatalf("a fresh device: %+v", d)
	}

	// Someone turns IPv6 back on, as the kernel has it for a new device,
	// and the device comes up again: it gets a link-local address.
	a.Do(t, func() error {
		l, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		for name, v := range map[string]string{"disable_ipv6": "0", "accept_ra": "1", "autoconf": "1"} {
			if _, err := vtepSysctl(name, v); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetIP6AddrGenMode(l, 0); err != nil { // EUI-64
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	testnet.Eventually(t, 5*time.Second, "a link-local address on the device turned back on", func() error {
		var err error
		a.Do(t, func() error {
			if ipv6Off() == nil {
				err = fmt.Errorf("%s has IPv6 off still", names.VXLANDevice)
			}
			return nil
		})
		return err
	})
	var wrong []string
	for _, e := range c.check(t, "a").Wrong {
		wrong = append(wrong, e.Key+": "+e.Have)
	}
	if len(wrong) != 2 || !strings.HasPrefix(wrong[0], names.VXLANDevice+" IPv6: on: addrgenmode 0, accept_ra 1, autoconf 1, disable_ipv6 0") ||
		!strings.HasPrefix(wrong[1], names.VXLANDevice+" IPv6 address: [fe80::") {
		t.Errorf("Check of a device with IPv6 on: %q", wrong)
	}
	c.reconcile(t, "a", peers)
	a.Do(t, ipv6Off)
	if d := c.check(t, "a"); !d.Clean() {
		t.Errorf("after the repair: %+v", d)
	}
	c.echo(t, "a", "b")
}
