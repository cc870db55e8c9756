package cni_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
)

// weft-cni first in a conflist, then Debian's reference portmap,
// bandwidth and tuning: each gets weft-cni's result as prevResult and acts
// on the interfaces it names; a host port reaches the pod.
func TestChainWithPortmapBandwidthTuning(t *testing.T) {
	for _, p := range []string{"portmap", "bandwidth", "tuning"} {
		if _, err := os.Stat(refPluginDir + "/" + p); err != nil {
			t.Fatalf("reference plugin %s missing (hack/install-deps.sh installs it): %v", p, err)
		}
	}
	n := newNode(t)
	// Debian's plugins speak CNI up to 1.0.0.
	list, err := libcni.ConfListFromBytes(fmt.Appendf(nil, `{
		"cniVersion": "1.0.0", "name": "weft",
		"plugins": [
			{"type": "weft-cni", "subnet": "10.99.20.0/24", "dataDir": %q},
			{"type": "portmap", "capabilities": {"portMappings": true}},
			{"type": "bandwidth", "capabilities": {"bandwidth": true}},
			{"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}
		]}`, n.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	pod := newPod(t)
	r := rt("chained", pod, "eth0")
	r.CapabilityArgs = map[string]any{
		"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 7000, "protocol": "tcp"}},
		"bandwidth":    map[string]any{"ingressRate": 100_000_000, "ingressBurst": 1_000_000, "egressRate": 100_000_000, "egressBurst": 1_000_000},
	}
	var raw types.Result
	if err := n.do(func() (err error) { raw, err = n.cni.AddNetworkList(t.Context(), list, r); return err }); err != nil {
		t.Fatalf("ADD through the chain: %v", err)
	}
	res, err := current.NewResultFromResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The last plugin's result still carries what weft-cni made.
	addr := podAddr(t, res)
	if !netip.MustParsePrefix("10.99.20.0/24").Contains(addr) {
		t.Fatalf("chained result lost weft's address: %v", res)
	}
	host := res.Interfaces[1].Name

	// tuning acted inside the pod.
	if err := inNS(pod, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/eth0/arp_notify")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != "1" {
			return fmt.Errorf("arp_notify = %q", b)
		}
		return nil
	}); err != nil {
		t.Errorf("tuning: %v", err)
	}
	// bandwidth found weft's host veth in prevResult and shaped it.
	if err := n.do(func() error {
		l, err := netlink.LinkByName(host)
		if err != nil {
			return err
		}
		qd, err := netlink.QdiscList(l)
		if err != nil {
			return err
		}
		for _, q := range qd {
			if q.Type() == "tbf" {
				return nil
			}
		}
		return fmt.Errorf("no tbf qdisc on %s: %v", host, qd)
	}); err != nil {
		t.Errorf("bandwidth: %v", err)
	}
	// portmap: the node's port 18080 reaches the pod's 7000.
	gw := netip.MustParseAddr("10.99.20.1")
	if err := tcpExchangeVia(pod, addr, 7000, "/run/netns/"+n.name, gw, 18080); err != nil {
		t.Errorf("portmap: %v", err)
	}

	// CHECK through the chain, less portmap: Debian's portmap 1.1.1 fails
	// CHECK for any IPv4-only pod (it looks for IPv6 rules it never made,
	// containernetworking/plugins#819).
	noPortmap := *list
	noPortmap.Plugins = []*libcni.PluginConfig{list.Plugins[0], list.Plugins[2], list.Plugins[3]}
	if err := n.do(func() error { return n.cni.CheckNetworkList(t.Context(), &noPortmap, r) }); err != nil {
		t.Errorf("CHECK through the chain: %v", err)
	}
	if err := n.do(func() error { return n.cni.DelNetworkList(t.Context(), list, r) }); err != nil {
		t.Fatalf("DEL through the chain: %v", err)
	}
	if vs := n.veths(); len(vs) != 0 {
		t.Errorf("veths left: %v", vs)
	}
	if l := n.leases(); len(l) != 0 {
		t.Errorf("leases left: %v", l)
	}
	if err := tcpExchangeVia(pod, addr, 7000, "/run/netns/"+n.name, gw, 18080); err == nil {
		t.Error("the host port still reaches something after DEL")
	}
}
