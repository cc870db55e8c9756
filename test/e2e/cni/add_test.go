package cni_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
)

// ADD, CHECK, DEL and DEL again for every CNI version weft-cni accepts;
// the result comes back in the config's version.
func TestAddCheckDel(t *testing.T) {
	for i, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := newNode(t)
			subnet := fmt.Sprintf("10.99.%d.0/24", i)
			conf := n.conf(v, subnet, map[string]any{"mtu": 1400, "bridge": "wtcbr0", "dns": map[string]any{"nameservers": []string{"10.96.0.10"}}})
			pod := newPod(t)
			r := rt("ctr-a", pod, "eth0")

			var raw types.Result
			if err := n.do(func() (err error) { raw, err = n.cni.AddNetwork(t.Context(), conf, r); return err }); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if raw.Version() != v {
				t.Errorf("result version %s, want the config's %s", raw.Version(), v)
			}
			res, err := current.NewResultFromResult(raw)
			if err != nil {
				t.Fatal(err)
			}
			assertAttached(t, n, res, pod, "wtcbr0", 1400, netip.MustParsePrefix(subnet))
			if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "10.96.0.10" {
				t.Errorf("dns not passed through: %+v", res.DNS)
			}
			if len(n.leases()) != 1 {
				t.Errorf("leases after ADD: %v", n.leases())
			}

			if v != "0.3.1" { // CHECK exists from 0.4.0 on
				if err := n.check(conf, r); err != nil {
					t.Fatalf("CHECK of a good attachment: %v", err)
				}
			}

			if err := n.del(conf, r); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if vs := n.veths(); len(vs) != 0 {
				t.Errorf("veths left after DEL: %v", vs)
			}
			if l := n.leases(); len(l) != 0 {
				t.Errorf("leases left after DEL: %v", l)
			}
			if err := inNS(pod, func() error {
				if _, err := netlink.LinkByName("eth0"); err == nil {
					return fmt.Errorf("eth0 still in the pod")
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			// DEL is idempotent, also for a container never seen and a
			// netns that is gone.
			if err := n.del(conf, r); err != nil {
				t.Errorf("second DEL: %v", err)
			}
			if err := n.del(conf, rt("never-added", "/run/netns/wtc-gone", "eth0")); err != nil {
				t.Errorf("DEL of an unknown container: %v", err)
			}
		})
	}
}

func assertAttached(t *testing.T, n *node, res *current.Result, pod, bridge string, mtu int, subnet netip.Prefix) {
	t.Helper()
	gw := subnet.Addr().Next()
	addr := podAddr(t, res)
	if !subnet.Contains(addr) || addr == gw || addr == subnet.Addr() {
		t.Fatalf("pod address %s is not a pod address of %s", addr, subnet)
	}
	if res.IPs[0].Gateway.String() != gw.String() {
		t.Errorf("gateway %s, want %s", res.IPs[0].Gateway, gw)
	}
	var host, brIface, podIface *current.Interface
	for _, i := range res.Interfaces {
		switch {
		case i.Sandbox != "":
			podIface = i
		case i.Name == bridge:
			brIface = i
		default:
			host = i
		}
	}
	if host == nil || brIface == nil || podIface == nil {
		t.Fatalf("result lacks the bridge, host veth or pod interface: %+v", res.Interfaces)
	}
	var br, veth netlink.Link
	n.do(func() (err error) {
		br, _ = netlink.LinkByName(bridge)
		veth, _ = netlink.LinkByName(host.Name)
		return nil
	})
	if br == nil || br.Type() != "bridge" || br.Attrs().MTU != mtu {
		t.Fatalf("bridge %s: %+v", bridge, br)
	}
	if veth == nil || veth.Attrs().MasterIndex != br.Attrs().Index || veth.Attrs().MTU != mtu || veth.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("host veth %s not up on %s with mtu %d: %+v", host.Name, bridge, mtu, veth)
	}
	if len(host.Name) > 15 || host.Name[:4] != "weft" {
		t.Errorf("host veth name %q", host.Name)
	}
	// The result's MACs are the kernel's, not what ADD meant to set.
	if brIface.Mac != br.Attrs().HardwareAddr.String() || host.Mac != veth.Attrs().HardwareAddr.String() {
		t.Errorf("result MACs bridge %s host %s, kernel has %s and %s",
			brIface.Mac, host.Mac, br.Attrs().HardwareAddr, veth.Attrs().HardwareAddr)
	}
	err := inNS(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != mtu || l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("eth0 mtu %d flags %v", l.Attrs().MTU, l.Attrs().Flags)
		}
		if podIface.Mac != l.Attrs().HardwareAddr.String() {
			return fmt.Errorf("result gives eth0 MAC %s, it has %s", podIface.Mac, l.Attrs().HardwareAddr)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(addr, subnet.Bits()).String() {
			return fmt.Errorf("eth0 addresses %v, want %s", addrs, addr)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gw.String() {
				return nil
			}
		}
		return fmt.Errorf("no default route via %s: %v", gw, routes)
	})
	if err != nil {
		t.Fatalf("in the pod: %v", err)
	}
}

// VERSION names exactly the spec versions weft-cni accepts.
func TestVersion(t *testing.T) {
	n := newNode(t)
	info, err := n.cni.GetVersionInfo(t.Context(), "weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(info.SupportedVersions())
	if got != "[0.3.1 0.4.0 1.0.0 1.1.0]" {
		t.Fatalf("supported versions %s", got)
	}
}
