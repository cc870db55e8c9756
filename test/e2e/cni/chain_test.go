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
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
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

// The conflist the agent writes on a node where install-cni put the
// portmap Weft ships (weft-portmap) beside weft-cni: libcni picks CNI
// 1.1.0 from it, and every verb runs through both plugins at that
// version, as a CNI 1.1 runtime runs them: STATUS, ADD with a host port,
// CHECK, GC (releasing what the runtime no longer lists, host ports
// included) and DEL.
func TestChainWithTheShippedPortmapAt110(t *testing.T) {
	n := newNode(t)
	pm := cniconf.FindPortmap(n.binDir)
	if pm == nil || pm.Type != names.PortmapType {
		t.Fatalf("no %s beside weft-cni in %s (make build makes it): %+v", names.PortmapType, n.binDir, pm)
	}
	if _, err := nodestate.Write(n.dataDir, nodestate.State{Subnet: netip.MustParsePrefix("10.99.21.0/24"), MTU: 1500, Bridge: names.Bridge}); err != nil {
		t.Fatal(err)
	}
	confDir := t.TempDir()
	if _, err := cniconf.Write(confDir, cniconf.Config{Bridge: names.Bridge, DataDir: n.dataDir, RunDir: t.TempDir(), Portmap: pm}); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromFile(cniconf.Path(confDir))
	if err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != "1.1.0" || len(list.Plugins) != 2 || list.Plugins[1].Network.Type != names.PortmapType {
		t.Fatalf("libcni picked CNI %s from %s, want 1.1.0 through weft-cni and %s", list.CNIVersion, list.Bytes, names.PortmapType)
	}
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS through the chain: %v", err)
	}

	// Two pods with a host port each, and one the runtime lost track of
	// (its ADD is in another cache): only weft-cni's GC can release it.
	hostPort := map[string]uint16{"keep": 18081, "gone": 18082}
	pods, addrs := map[string]string{}, map[string]netip.Addr{}
	for _, id := range []string{"keep", "gone", "lost"} {
		pods[id] = newPod(t)
		r, client := rt(id, pods[id], "eth0"), n.cni
		if p, ok := hostPort[id]; ok {
			r.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": p, "containerPort": 7000, "protocol": "tcp"}}}
		} else {
			client = freshClient(t, n)
		}
		var raw types.Result
		if err := n.do(func() (err error) { raw, err = client.AddNetworkList(t.Context(), list, r); return err }); err != nil {
			t.Fatalf("ADD %s through the chain: %v", id, err)
		}
		if raw.Version() != "1.1.0" {
			t.Fatalf("ADD %s answered in CNI %s, want 1.1.0", id, raw.Version())
		}
		res, err := current.NewResultFromResult(raw)
		if err != nil {
			t.Fatal(err)
		}
		addrs[id] = podAddr(t, res)
	}
	gw := netip.MustParseAddr("10.99.21.1")
	for id, p := range hostPort {
		if err := tcpExchangeVia(pods[id], addrs[id], 7000, "/run/netns/"+n.name, gw, p); err != nil {
			t.Errorf("host port %d to %s: %v", p, id, err)
		}
	}
	if k := n.hostPortChains(); k != 2 {
		t.Errorf("%d host-port DNAT chains for two pods with a host port", k)
	}
	// CHECK through the whole chain, portmap included.
	keep := rt("keep", pods["keep"], "eth0")
	keep.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 18081, "containerPort": 7000, "protocol": "tcp"}}}
	if err := n.do(func() error { return n.cni.CheckNetworkList(t.Context(), list, keep) }); err != nil {
		t.Errorf("CHECK through the chain: %v", err)
	}

	// The runtime lists keep alone: libcni DELs gone (cached, with its
	// host port) through the chain, then each plugin's GC runs; weft-cni's
	// releases lost.
	if err := n.do(func() error {
		return n.cni.GCNetworkList(t.Context(), list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}})
	}); err != nil {
		t.Fatalf("GC through the chain: %v", err)
	}
	if l := n.leases(); len(l) != 1 || l[0]["id"] != "keep" {
		t.Fatalf("leases after GC: %v, want keep's alone", l)
	}
	if k := n.hostPortChains(); k != 1 {
		t.Errorf("%d host-port DNAT chains after GC, want keep's alone", k)
	}
	if err := tcpExchangeVia(pods["keep"], addrs["keep"], 7000, "/run/netns/"+n.name, gw, 18081); err != nil {
		t.Errorf("keep's host port after GC: %v", err)
	}
	if err := n.status(list); err != nil {
		t.Errorf("STATUS after GC: %v", err)
	}

	if err := n.do(func() error { return n.cni.DelNetworkList(t.Context(), list, keep) }); err != nil {
		t.Fatalf("DEL through the chain: %v", err)
	}
	if vs := n.veths(); len(vs) != 0 {
		t.Errorf("veths left: %v", vs)
	}
	if l := n.leases(); len(l) != 0 {
		t.Errorf("leases left: %v", l)
	}
	if k := n.hostPortChains(); k != 0 {
		t.Errorf("%d host-port DNAT chains left after DEL", k)
	}
	if err := tcpExchangeVia(pods["keep"], addrs["keep"], 7000, "/run/netns/"+n.name, gw, 18081); err == nil {
		t.Error("the host port still reaches something after DEL")
	}
}

// hostPortChains counts portmap's per-pod DNAT chains (CNI-DN-*) in the
// node's namespace, read from the kernel's nftables (where the node's
// iptables-nft, which portmap drives, keeps them).
func (n *node) hostPortChains() int {
	n.t.Helper()
	count := 0
	if err := n.do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := c.ListChains()
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if strings.HasPrefix(ch.Name, "CNI-DN-") {
				count++
			}
		}
		return nil
	}); err != nil {
		n.t.Fatalf("list the node's nftables chains: %v", err)
	}
	return count
}
