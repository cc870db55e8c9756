package firewall_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// pod is a pod on node n's bridge whose host veth is named like the CNI
// plugin's (names.VethPrefix and the pod's name).
type pod struct {
	*testnet.Node
	guard firewall.Pod
}

func addPod(t *testing.T, topo *testnet.Topo, n *testnet.Node, name string, addr string) pod {
	t.Helper()
	p := topo.AddPod(t, n, name, netip.MustParsePrefix(addr), netip.MustParseAddr("10.244.1.1"), names.Bridge)
	veth := names.VethPrefix + name
	n.Do(t, func() error {
		l, err := netlink.LinkByName("vp-" + name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, veth); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	g := firewall.Pod{Veth: veth, IP: p.IP}
	p.Do(t, func() error {
		l, err := netlink.LinkByName("eth0")
		g.MAC = l.Attrs().HardwareAddr
		return err
	})
	return pod{p, g}
}

func drops(t *testing.T, n *testnet.Node) map[string]uint64 {
	var d map[string]uint64
	n.Do(t, func() (err error) { d, err = firewall.Drops(); return err })
	return d
}

// sendARP sends count ARP replies from p's eth0 claiming that ip is at
// mac (the frame's source MAC is eth0's own).
func sendARP(t *testing.T, p pod, mac net.HardwareAddr, ip netip.Addr, count int) {
	t.Helper()
	p.Do(t, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		a := ip.As4()
		frame := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		frame = append(frame, l.Attrs().HardwareAddr...)
		frame = append(frame, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2)
		frame = append(frame, mac...)
		frame = append(frame, a[:]...)
		frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, a[0], a[1], a[2], a[3])
		to := &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6, Protocol: 0x0608}
		copy(to.Addr[:], frame[:6])
		for i := 0; i < count; i++ {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return fmt.Errorf("send ARP: %w", err)
			}
		}
		return nil
	})
}

// arrives reports whether a datagram sent from src in from's namespace
// reaches dst in to's (one way: nothing needs to find the way back to a
// forged source). It sends 3 datagrams.
func arrives(t *testing.T, from *testnet.Node, src netip.Addr, to *testnet.Node, dst netip.Addr) bool {
	t.Helper()
	var l *net.UDPConn
	to.Do(t, func() (err error) {
		l, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst.AsSlice()})
		return err
	})
	defer l.Close()
	payload := nextPayload()
	from.Do(t, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, l.LocalAddr().(*net.UDPAddr))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < 3; i++ {
			if _, err := c.Write(payload); err != nil {
				return err
			}
		}
		return nil
	})
	return received(l, payload)
}

func TestPodsSendOnlyFromTheirOwnMACAndIP(t *testing.T) {
	topo := testnet.NewTopo(t, "fwp", []string{"a"})
	a := topo.Nodes["a"]
	a.Do(t, func() error {
		_, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.244.1.1/24"), 1500)
		return err
	})
	p1 := addPod(t, topo, a, "p1", "10.244.1.2/24")
	p2 := addPod(t, topo, a, "p2", "10.244.1.3/24")
	node := &testnet.Node{Name: "a", NS: a.NS, IP: netip.MustParseAddr("10.244.1.1")}
	forged := netip.MustParseAddr("203.0.113.66")
	stolen := netip.MustParseAddr("10.244.1.99")
	p1.Do(t, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, ip := range []netip.Addr{forged, stolen} {
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				return err
			}
		}
		return nil
	})

	// Today's hole: a pod sends from any address it likes.
	for _, src := range []netip.Addr{forged, stolen} {
		if !arrives(t, p1.Node, src, p2.Node, p2.IP) {
			t.Fatalf("without the guard a datagram from %s did not arrive: the test cannot see the guard work", src)
		}
	}

	a.Do(t, func() error { return firewall.Ensure(cidr) })
	// No pod is known yet: a veth the guard does not know sends nothing.
	if _, err := testnet.SeenAs(p1.Node, p1.IP, p2.Node, p2.IP, 3); err == nil {
		t.Fatal("a pod unknown to the guard reached another pod")
	}
	a.Do(t, func() error {
		ch, err := firewall.SyncPods(func() ([]firewall.Pod, error) { return []firewall.Pod{p1.guard, p2.guard}, nil })
		if err == nil && ch.Added != 2 {
			err = fmt.Errorf("SyncPods added %d, want 2", ch.Added)
		}
		return err
	})
	before := drops(t, a)

	// Real traffic flows: pod to pod on the node (bridged), pod to node
	// and node to pod (kubelet's probes).
	for _, c := range []struct {
		from, to *testnet.Node
		src, dst netip.Addr
	}{{p1.Node, p2.Node, p1.IP, p2.IP}, {p2.Node, p1.Node, p2.IP, p1.IP}, {p1.Node, node, p1.IP, node.IP}, {node, p1.Node, node.IP, p1.IP}} {
		if err := testnet.Echo(c.from, c.src, c.to, c.dst); err != nil {
			t.Errorf("real traffic: %v", err)
		}
	}
	// Forged sources leave no pod.
	for _, src := range []netip.Addr{forged, stolen} {
		if arrives(t, p1.Node, src, p2.Node, p2.IP) {
			t.Errorf("a datagram from p1 with source %s reached p2", src)
		}
		if arrives(t, p1.Node, src, node, node.IP) {
			t.Errorf("a datagram from p1 with source %s reached the node", src)
		}
	}
	// Nor ARP that claims another pod's address, or p1's with another MAC.
	sendARP(t, p1, p1.guard.MAC, p2.IP, 3)
	sendARP(t, p1, net.HardwareAddr{0x0a, 0x58, 1, 2, 3, 4}, p1.IP, 2)
	after := drops(t, a)
	if n := after[firewall.DropSpoofedSource] - before[firewall.DropSpoofedSource]; n < 6 {
		t.Errorf("%d datagrams with forged sources counted, want at least 6 (%v)", n, after)
	}
	if n := after[firewall.DropSpoofedARP] - before[firewall.DropSpoofedARP]; n != 5 {
		t.Errorf("%d forged ARP replies counted, want 5 (%v)", n, after)
	}

	// A pod that changes its MAC is cut off until it takes its own back.
	setMAC := func(mac net.HardwareAddr) {
		p1.Do(t, func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetHardwareAddr(l, mac)
		})
	}
	setMAC(net.HardwareAddr{0x0a, 0x58, 10, 244, 1, 3})
	if _, err := testnet.SeenAs(p1.Node, p1.IP, p2.Node, p2.IP, 3); err == nil {
		t.Error("p1 reached p2 with a forged MAC")
	}
	setMAC(p1.guard.MAC)
	if err := testnet.Echo(p1.Node, p1.IP, p2.Node, p2.IP); err != nil {
		t.Errorf("p1 with its own MAC again: %v", err)
	}

	// A pod the plugin adds is let out at once; SyncPods keeps the set
	// exact, removing what is no longer desired.
	p3 := addPod(t, topo, a, "p3", "10.244.1.4/24")
	if _, err := testnet.SeenAs(p3.Node, p3.IP, p1.Node, p1.IP, 3); err == nil {
		t.Error("p3 reached p1 before the guard knew it")
	}
	a.Do(t, func() error { return firewall.AllowPod(p3.guard) })
	if err := testnet.Echo(p3.Node, p3.IP, p1.Node, p1.IP); err != nil {
		t.Errorf("p3 after AllowPod: %v", err)
	}
	a.Do(t, func() error {
		ch, err := firewall.SyncPods(func() ([]firewall.Pod, error) { return []firewall.Pod{p1.guard, p3.guard}, nil })
		if err == nil && (ch.Added != 0 || ch.Removed != 1) {
			err = fmt.Errorf("SyncPods changed %+v, want p2 removed", ch)
		}
		return err
	})
	if _, err := testnet.SeenAs(p2.Node, p2.IP, p1.Node, p1.IP, 3); err == nil {
		t.Error("p2 reached p1 after it left the guard's set")
	}

	// Replacing the table (a drifted chain) keeps the pods it knew.
	a.Do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := &nftables.Table{Name: names.NFTable, Family: nftables.TableFamilyBridge}
		rs, err := c.GetRules(tb, &nftables.Chain{Name: "from-pods", Table: tb})
		if err != nil {
			return err
		}
		if err := c.DelRule(rs[len(rs)-1]); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if ok, err := firewall.InSync(cidr); err != nil || ok {
			return fmt.Errorf("InSync after a rule was deleted = %v, %v", ok, err)
		}
		return firewall.Ensure(cidr)
	})
	if err := testnet.Echo(p3.Node, p3.IP, p1.Node, p1.IP); err != nil {
		t.Errorf("p3 after the table was replaced: %v", err)
	}
}
