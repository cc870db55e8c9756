package preflight

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/names"
)

// vxlanNode is a namespace of this file's own, with VXLAN devices named
// devs (VNI 100+i), all on Weft's VXLAN port and up.
func vxlanNode(t *testing.T, devs ...string) node {
	t.Helper()
	n := newNode(t)
	n.do(t, func() error {
		for i, d := range devs {
			vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: d}, VxlanId: 100 + i, Port: int(names.VXLANPort)}
			if err := netlink.LinkAdd(vx); err != nil {
				return fmt.Errorf("add %s: %w", d, err)
			}
			if err := netlink.LinkSetUp(vx); err != nil {
				return fmt.Errorf("bring %s up: %w", d, err)
			}
		}
		return nil
	})
	return n
}

func vxlanPortCheck(t *testing.T, n node) Check {
	t.Helper()
	return find(t, n.run(t, Worker), fmt.Sprintf("port %d/udp", names.VXLANPort))
}

// On a node where the agent already runs, the kernel socket of Weft's own
// VXLAN device holds the port: that is Weft, not a conflict.
func TestVXLANPortHeldByWeftsDevicePasses(t *testing.T) {
	n := vxlanNode(t, names.VXLANDevice)
	c := vxlanPortCheck(t, n)
	if c.Result != Pass || !strings.Contains(c.Detail, "Weft's VXLAN device "+names.VXLANDevice) || strings.Contains(c.Detail, "cannot see") {
		t.Fatalf("%s: %s: %s (fix %q)", c.Name, c.Result, c.Detail, c.Fix)
	}
	t.Logf("%s: %s", c.Name, c.Detail)
}

// Another VXLAN device on the port is someone else's overlay (flannel's
// flannel.1 uses 8472, but others take 4789): a conflict, and named.
func TestVXLANPortHeldByAnotherDeviceFails(t *testing.T) {
	for _, devs := range [][]string{{"wtgvx"}, {names.VXLANDevice, "wtgvx"}} {
		n := vxlanNode(t, devs...)
		c := vxlanPortCheck(t, n)
		if c.Result != Fail || !strings.Contains(c.Detail, "taken") || !strings.Contains(c.Detail, "wtgvx") ||
			!strings.Contains(c.Detail, "not Weft's") && !strings.Contains(c.Detail, "Weft's is "+names.VXLANDevice+" only") || c.Fix == "" {
			t.Errorf("devices %v: %s: %s: %s (fix %q)", devs, c.Name, c.Result, c.Detail, c.Fix)
		}
		t.Logf("devices %v: %s: %s; fix: %s", devs, c.Name, c.Detail, c.Fix)
	}
}

// A process on the port still fails, also with a Weft-named VXLAN device
// that is down (a down device has no socket).
func TestVXLANPortHeldByAProcessFails(t *testing.T) {
	n := vxlanNode(t)
	n.do(t, func() error {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: names.VXLANDevice}, VxlanId: 100, Port: int(names.VXLANPort)}
		return netlink.LinkAdd(vx)
	})
	var conn net.PacketConn
	n.do(t, func() (err error) {
		conn, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", names.VXLANPort))
		return err
	})
	defer conn.Close()
	c := vxlanPortCheck(t, n)
	if c.Result != Fail || !strings.Contains(c.Detail, "taken") || strings.Contains(c.Detail, "VXLAN device") {
		t.Fatalf("%s: %s: %s", c.Name, c.Result, c.Detail)
	}
	t.Logf("%s: %s", c.Name, c.Detail)
}
