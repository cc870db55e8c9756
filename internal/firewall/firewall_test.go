package firewall_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

var cidr = netip.MustParsePrefix("10.244.0.0/16")

// inetRules is how many rules the inet table holds: masquerade, two
// forward accepts, the overlay guard's drop in forward and in input, and
// the VXLAN guard's jump and four rules.
const inetRules = 10

// tables lists the inet tables' names and Weft's rule count.
func tables(t *testing.T, n *testnet.Node) (names_ []string, weftRules int) {
	n.Do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, tb := range ts {
			names_ = append(names_, tb.Name)
			if tb.Name != names.NFTable {
				continue
			}
			chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
			if err != nil {
				return err
			}
			for _, ch := range chains {
				if ch.Table.Name == tb.Name {
					rs, err := c.GetRules(tb, ch)
					if err != nil {
						return err
					}
					weftRules += len(rs)
				}
			}
		}
		return nil
	})
	return names_, weftRules
}

func TestMasqueradeOnlyLeavingTheClusterCIDRAndReplaceAtomically(t *testing.T) {
	// Node a hosts a pod behind weft0 and forwards; node b is both a host
	// outside the cluster CIDR (172.30.1.2) and a peer node with a pod
	// subnet (10.244.2.1), routing a's pod subnet back via a.
	topo := testnet.NewTopo(t, "wta", []string{"a", "b"})
	a, b := topo.Nodes["a"], topo.Nodes["b"]
	a.Do(t, func() error {
		if _, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.244.1.1/24"), 1500); err != nil {
			return err
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index,
			Dst: &net.IPNet{IP: net.IP{10, 244, 2, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.IP(b.IP.AsSlice())}); err != nil {
			return err
		}
		return testnet.WriteSysctl("net/ipv4/ip_forward", "1")
	})
	pod := topo.AddPod(t, a, "p1", netip.MustParsePrefix("10.244.1.2/24"), netip.MustParseAddr("10.244.1.1"), names.Bridge)
	peerPod := netip.MustParseAddr("10.244.2.1")
	b.Do(t, func() error {
		if _, err := bridge.Ensure(names.Bridge, netip.PrefixFrom(peerPod, 24), 1500); err != nil {
			return err
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index,
			Dst: &net.IPNet{IP: net.IP{10, 244, 1, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.IP(a.IP.AsSlice())})
	})
	// Someone else's table, which Weft must never touch.
	a.Do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(&nftables.Table{Name: "wtaother", Family: nftables.TableFamilyINet})
		return c.Flush()
	})

	// Without Weft's table, nothing is masqueraded: the outside host sees
	// the pod's own address (and could not answer it in a real network).
	if seen, err := testnet.SeenAs(pod, pod.IP, b, b.IP, 25); err != nil || seen != pod.IP {
		t.Fatalf("before the firewall: %v, seen as %s", err, seen)
	}

	a.Do(t, func() error { return firewall.Ensure(cidr) })
	a.Do(t, func() error {
		if ok, err := firewall.InSync(cidr); err != nil || !ok {
			return fmt.Errorf("InSync after Ensure = %v, %v", ok, err)
		}
		return firewall.Ensure(cidr) // idempotent
	})
	// A forward chain whose policy was turned to drop behind Weft's back
	// is not in sync, and Ensure puts it back.
	a.Do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "forward", Table: &nftables.Table{Name: names.NFTable, Family: nftables.TableFamilyINet},
			Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			return fmt.Errorf("set the forward policy to drop: %w", err)
		}
		if ok, err := firewall.InSync(cidr); err != nil || ok {
			return fmt.Errorf("InSync with a drop policy = %v, %v", ok, err)
		}
		if err := firewall.Ensure(cidr); err != nil {
			return err
		}
		if ok, err := firewall.InSync(cidr); err != nil || !ok {
			return fmt.Errorf("InSync after repairing the policy = %v, %v", ok, err)
		}
		return nil
	})
	if ts, n := tables(t, a); n != inetRules || len(ts) != 2 {
		t.Fatalf("after Ensure twice: tables %v, %d Weft rules; want wtaother and weft with %d rules", ts, n, inetRules)
	}

	// Real packets: to the outside, masqueraded to a's underlay address;
	// to a pod on another node, the pod's own address.
	if seen, err := testnet.SeenAs(pod, pod.IP, b, b.IP, 25); err != nil || seen != a.IP {
		t.Fatalf("pod → outside host: %v, seen as %s, want masqueraded to %s", err, seen, a.IP)
	}
	if err := testnet.Echo(pod, pod.IP, b, peerPod); err != nil {
		t.Fatalf("pod → pod on another node: %v", err)
	}

	// A new cluster CIDR replaces the rules rather than adding to them.
	other := netip.MustParsePrefix("10.245.0.0/16")
	a.Do(t, func() error {
		if err := firewall.Ensure(other); err != nil {
			return err
		}
		if ok, err := firewall.InSync(cidr); err != nil || ok {
			return fmt.Errorf("InSync(old CIDR) after replacing = %v, %v", ok, err)
		}
		if ok, err := firewall.InSync(other); err != nil || !ok {
			return fmt.Errorf("InSync(new CIDR) = %v, %v", ok, err)
		}
		return nil
	})
	if _, n := tables(t, a); n != inetRules {
		t.Fatalf("after a CIDR change Weft has %d rules, want %d", n, inetRules)
	}

	a.Do(t, func() error {
		removed, err := firewall.Remove()
		if err == nil && len(removed) != 2 {
			t.Errorf("Remove removed %v, want the inet and the bridge table", removed)
		}
		return err
	})
	a.Do(t, func() error { // no table: not an error, nothing removed
		removed, err := firewall.Remove()
		if len(removed) != 0 {
			t.Errorf("second Remove removed %v", removed)
		}
		return err
	})
	if ts, n := tables(t, a); n != 0 || len(ts) != 1 || ts[0] != "wtaother" {
		t.Fatalf("after Remove: tables %v, %d Weft rules; want only wtaother", ts, n)
	}
	a.Do(t, func() error {
		if err := firewall.Ensure(netip.MustParsePrefix("fd00::/64")); err == nil {
			return fmt.Errorf("Ensure accepted an IPv6 cluster CIDR")
		}
		return nil
	})
}
