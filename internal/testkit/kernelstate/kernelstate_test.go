package kernelstate_test

import (
	"net"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testkit/kernelstate"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// What the kernel adds by itself while nobody changes anything (the NOARP
// entry of an IGMP report's group, a neighbour learned from traffic, a
// failed resolution) leaves a snapshot as it was; what is put there on
// purpose (a permanent neighbour, a route, an nftables table) changes it
// and can be found in it.
func TestSnapshotSeesWhatIsPutThereNotWhatTheKernelMakes(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.NewNS(t, "ks")
	testnet.Veth(t, n, "ks0", n, "ks1")
	n.Run(t, func() error {
		l, err := netlink.LinkByName("ks0")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("192.0.2.1/24")
		return netlink.AddrAdd(l, addr)
	})
	before := testnet.Kernel(t, n.Path())
	if len(before.Of("link")) != 3 || len(before.Of("addr")) == 0 {
		t.Fatalf("a namespace with lo and a veth pair:\n%s", before)
	}

	n.Run(t, func() error {
		l, err := netlink.LinkByName("ks0")
		if err != nil {
			return err
		}
		mac, _ := net.ParseMAC("01:00:5e:00:00:16")
		for _, nb := range []netlink.Neigh{
			{IP: net.IPv4(224, 0, 0, 22), HardwareAddr: mac, State: netlink.NUD_NOARP}, // as after an IGMPv3 report
			{IP: net.IPv4(192, 0, 2, 7), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 7}, State: netlink.NUD_REACHABLE},
			{IP: net.IPv4(192, 0, 2, 8), State: netlink.NUD_FAILED},
		} {
			nb.LinkIndex, nb.Family = l.Attrs().Index, netlink.FAMILY_V4
			if err := netlink.NeighAdd(&nb); err != nil {
				return err
			}
		}
		return nil
	})
	if d := before.Diff(testnet.Kernel(t, n.Path())); d != "" {
		t.Errorf("entries the kernel makes by itself changed the snapshot:\n%s", d)
	}

	n.Run(t, func() error {
		l, err := netlink.LinkByName("ks0")
		if err != nil {
			return err
		}
		nb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: net.IPv4(192, 0, 2, 9),
			HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}, State: netlink.NUD_PERMANENT}
		if err := netlink.NeighAdd(nb); err != nil {
			return err
		}
		_, dst, _ := net.ParseCIDR("198.51.100.0/24")
		if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.IPv4(192, 0, 2, 2), Protocol: 87}); err != nil {
			return err
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(&nftables.Table{Name: "kstest", Family: nftables.TableFamilyINet})
		c.AddChain(&nftables.Chain{Name: "fwd", Table: tb})
		return c.Flush()
	})
	after := testnet.Kernel(t, n.Path())
	d := before.Diff(after)
	for _, want := range []string{
		"+ neigh dev=ks0 ip=192.0.2.9 lladdr=02:00:00:00:00:09 state=permanent",
		"+ route dst=198.51.100.0/24 gw=192.0.2.2 dev=ks0 proto=87 ",
		"+ nft table=inet/kstest",
		"+ nft table=inet/kstest chain=fwd ",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if got := after.Mentioning("198.51.100.0/24"); len(got) != 1 {
		t.Errorf("Mentioning the route's destination: %q", got)
	}
	if strings.Count(d, "\n") != 4 {
		t.Errorf("diff has more than the four changes:\n%s", d)
	}
	if v := kernelstate.Field(after.Of("route")[0], "dst"); v == "" {
		t.Errorf("Field dst of %q is empty", after.Of("route")[0])
	}
}
