package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// Pods made by the real plugin talk at once through the guards; a pod
// that forges its source and a host on the underlay that forges VXLAN get
// nothing through, and each node's metrics count what it dropped.
func TestLabGuardsDropForgedTraffic(t *testing.T) {
	l := labtest.Up(t, config(t, cluster.BackendVXLAN, 1, 2, 1))
	fullMatrix(t, l)
	n1, n2 := l.Nodes[0], l.Nodes[1]
	from, to := labtest.PodOn(t, l, n1.Name), labtest.PodOn(t, l, n2.Name)

	var rx *net.UDPConn
	inNetns(t, to.Netns, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: to.IP.AsSlice()})
		return err
	})
	defer rx.Close()
	got := func(payload string) bool {
		rx.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		for {
			n, _, err := rx.ReadFromUDP(buf)
			if err != nil {
				return false
			}
			if string(buf[:n]) == payload {
				return true
			}
		}
	}
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()

	// A pod sending from an address that is not its own.
	forged := netip.MustParseAddr("203.0.113.66")
	inNetns(t, from.Netns, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: forged.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return err
		}
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: forged.AsSlice()}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("spoofed"))
		return err
	})
	if got("spoofed") {
		t.Error("a datagram from a pod with a forged source was delivered")
	}
	// A host on the underlay that is not a peer, posing as n1's pod.
	vtep, err := net.ParseMAC(vtepMAC(t, l, n2.Name))
	if err != nil {
		t.Fatal(err)
	}
	inNetns(t, l.State.Underlay, func() error {
		return fwtest.SendVXLAN(n2.UnderlayIP, fwtest.VXLAN(vtep, from.IP, dst, []byte("stranger")))
	})
	if got("stranger") {
		t.Error("a stranger's VXLAN datagram was delivered")
	}
	// n1's pod, really itself, still gets through.
	inNetns(t, from.Netns, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: from.IP.AsSlice()}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("real"))
		return err
	})
	if !got("real") {
		t.Error("the pod's own datagram was not delivered")
	}

	testnet.Eventually(t, 15*time.Second, "the drops in the agents' metrics", func() error {
		if n := dropped(t, n1, firewall.DropSpoofedSource); n < 1 {
			return fmt.Errorf("%s counts %v %s drops", n1.Name, n, firewall.DropSpoofedSource)
		}
		if n := dropped(t, n2, firewall.DropVXLANNotPeer); n < 1 {
			return fmt.Errorf("%s counts %v %s drops", n2.Name, n, firewall.DropVXLANNotPeer)
		}
		return nil
	})
}

func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(netns.Path(name), func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatal(err)
	}
}

// dropped reads weft_firewall_dropped_packets_total{reason} from node's
// agent's metrics endpoint; -1 when the sample is missing.
func dropped(t *testing.T, n *lab.NodeState, reason string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.DialIn(n.Netns)}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(names.MetricsPort)+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	defer resp.Body.Close()
	want := `weft_firewall_dropped_packets_total{reason="` + reason + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
