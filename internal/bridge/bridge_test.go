package bridge

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testkit/testnet"
)

// inNewNS runs fn in a network namespace of its own, removed afterwards.
func inNewNS(t *testing.T, fn func() error) {
	t.Helper()
	testnet.NewNS(t, "br").Run(t, fn)
}

func ipv4Addrs(t *testing.T, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// Ensure makes the bridge up with its fixed MAC, the MTU and only the
// gateway; called again with another subnet's gateway and MTU, it drops
// the old address instead of keeping both.
func TestEnsureMakesAndCorrectsTheBridge(t *testing.T) {
	inNewNS(t, func() error {
		gw := netip.MustParsePrefix("10.98.1.1/24")
		br, err := Ensure("wtr1br0", gw, 1400)
		if err != nil {
			return err
		}
		l, err := netlink.LinkByName("wtr1br0")
		if err != nil {
			return err
		}
		a := l.Attrs()
		if l.Type() != "bridge" || a.Flags&net.FlagUp == 0 || a.MTU != 1400 || a.HardwareAddr.String() != MAC(gw.Addr()).String() || a.Index != br.Index {
			t.Fatalf("bridge after Ensure: type %s flags %v mtu %d mac %s", l.Type(), a.Flags, a.MTU, a.HardwareAddr)
		}
		if got := ipv4Addrs(t, "wtr1br0"); len(got) != 1 || got[0] != gw.String() {
			t.Fatalf("addresses %v, want only %s", got, gw)
		}
		// Idempotent: a second call changes nothing.
		if _, err := Ensure("wtr1br0", gw, 1400); err != nil {
			return err
		}
		if got := ipv4Addrs(t, "wtr1br0"); len(got) != 1 || got[0] != gw.String() {
			t.Fatalf("addresses after a second Ensure %v, want only %s", got, gw)
		}

		moved := netip.MustParsePrefix("10.98.2.1/24")
		if _, err := Ensure("wtr1br0", moved, 1450); err != nil {
			return err
		}
		if got := ipv4Addrs(t, "wtr1br0"); len(got) != 1 || got[0] != moved.String() {
			t.Fatalf("addresses after the subnet moved %v, want only %s", got, moved)
		}
		if l, _ = netlink.LinkByName("wtr1br0"); l.Attrs().MTU != 1450 {
			t.Fatalf("mtu %d after Ensure with 1450", l.Attrs().MTU)
		}
		return nil
	})
}

// A name taken by something that is not a bridge is ErrNotBridge, and
// that interface is left alone.
func TestEnsureRefusesANonBridge(t *testing.T) {
	inNewNS(t, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "wtr1taken"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wtr1peer"}); err != nil {
			return err
		}
		_, err := Ensure("wtr1taken", netip.MustParsePrefix("10.98.3.1/24"), 1500)
		if !errors.Is(err, ErrNotBridge) {
			t.Fatalf("Ensure over a veth: %v, want ErrNotBridge", err)
		}
		if l, err := netlink.LinkByName("wtr1taken"); err != nil || l.Type() != "veth" {
			t.Fatalf("the veth holding the name: %v %v", l, err)
		}
		if got := ipv4Addrs(t, "wtr1taken"); len(got) != 0 {
			t.Fatalf("Ensure gave the veth addresses %v", got)
		}
		return nil
	})
}
