package cni_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/nodestate"
)

// bridgeAddrs lists the IPv4 addresses of the node's bridge.
func (n *node) bridgeAddrs(name string) map[string]bool {
	n.t.Helper()
	out := map[string]bool{}
	if err := n.do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			out[a.IPNet.String()] = true
		}
		return err
	}); err != nil {
		n.t.Fatal(err)
	}
	return out
}

// The plugin only adds to the bridge: an ADD that carries another subnet
// does not take the gateway from the pods already on it. Changing the
// bridge's address is the agent's job.
func TestAddWithAnotherSubnetKeepsTheGateway(t *testing.T) {
	n := newNode(t)
	first := newPod(t)
	n.mustAdd(n.conf("1.0.0", "10.99.40.0/24", nil), rt("first", first, "eth0"))
	n.mustAdd(n.conf("1.0.0", "10.99.41.0/24", nil), rt("second", newPod(t), "eth0"))
	if addrs := n.bridgeAddrs("weft0"); !addrs["10.99.40.1/24"] || !addrs["10.99.41.1/24"] {
		t.Fatalf("bridge addresses after ADDs in two subnets: %v, want both gateways", addrs)
	}
	if err := ping(first, netip.MustParseAddr("10.99.40.1")); err != nil {
		t.Fatalf("the first pod lost its gateway: %v", err)
	}
}

// A lease file a crash left empty, beside a spare that is garbage too,
// is recovered from the kernel (the pods' veths): STATUS is ready, a new
// ADD gets an address no pod holds, DEL and GC work, the surviving pods
// keep theirs and pass CHECK.
func TestDamagedLeaseFileIsRecoveredFromTheVeths(t *testing.T) {
	n := newNode(t)
	confBytes := n.netConf("1.1.0", "10.99.42.0/24", nil)
	conf := n.conf("1.1.0", "10.99.42.0/24", nil)
	pods := map[string]string{}
	held := map[netip.Addr]string{}
	for _, id := range []string{"a", "b", "c"} {
		pods[id] = newPod(t)
		held[podAddr(t, n.mustAdd(conf, rt(id, pods[id], "eth0")))] = id
	}
	dir := filepath.Join(n.dataDir, "ipam", "weft")
	if err := os.WriteFile(filepath.Join(dir, "leases.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".leases.json.spare"), []byte(`{"leases":[{"ip":`), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := libcniList(confBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS after the lease file was damaged: %v", err)
	}
	pods["d"] = newPod(t)
	d := podAddr(t, n.mustAdd(conf, rt("d", pods["d"], "eth0")))
	if owner, taken := held[d]; taken {
		t.Fatalf("ADD after damage handed out %s, which pod %s holds", d, owner)
	}
	if err := n.del(conf, rt("a", pods["a"], "eth0")); err != nil {
		t.Fatalf("DEL after damage: %v", err)
	}
	if err := n.del(conf, rt("a", pods["a"], "eth0")); err != nil {
		t.Fatalf("second DEL after damage: %v", err)
	}
	valid := []types.GCAttachment{{ContainerID: "b", IfName: "eth0"}, {ContainerID: "c", IfName: "eth0"}, {ContainerID: "d", IfName: "eth0"}}
	if err := n.do(func() error {
		return freshClient(t, n).GCNetworkList(t.Context(), list, &libcni.GCArgs{ValidAttachments: valid})
	}); err != nil {
		t.Fatalf("GC after damage: %v", err)
	}
	if l := n.leases(); len(l) != 3 {
		t.Fatalf("leases after recovery, DEL and GC: %v, want b, c and d", l)
	}
	// A retried ADD of b takes its recovered lease back, at its address,
	// and CHECK agrees with it.
	for _, id := range []string{"b", "c"} {
		res := n.mustAdd(conf, rt(id, pods[id], "eth0"))
		if a := podAddr(t, res); held[a] != id {
			t.Fatalf("retried ADD of %s after recovery got %s", id, a)
		}
		if err := n.check(conf, rt(id, pods[id], "eth0")); err != nil {
			t.Errorf("CHECK of %s after recovery: %v", id, err)
		}
	}
	for _, l := range n.leases() {
		if l["veth"] != "" || l["id"] == "" {
			t.Errorf("after retried ADDs a lease still has no owner: %v", l)
		}
	}
}

// The conflist the agent writes offers CNI 1.1.0 to a runtime whose
// libcni knows it, so that the runtime sends GC and STATUS; GC through
// libcni loading that very file releases the invalid attachments. An
// older runtime reads cniVersion alone and gets 1.0.0.
func TestGCThroughLibcniFromTheAgentsConflist(t *testing.T) {
	n := newNode(t)
	subnet := netip.MustParsePrefix("10.99.43.0/24")
	if _, err := nodestate.Write(n.dataDir, nodestate.State{Subnet: subnet, MTU: 1500, Bridge: "weft0"}); err != nil {
		t.Fatal(err)
	}
	confDir := t.TempDir()
	if _, err := cniconf.Write(confDir, cniconf.Config{Bridge: "weft0", DataDir: n.dataDir, RunDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromFile(cniconf.Path(confDir))
	if err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != "1.1.0" {
		t.Fatalf("libcni picked CNI %s from the conflist, want 1.1.0", list.CNIVersion)
	}
	pods := map[string]string{}
	for _, id := range []string{"keep", "gone"} {
		pods[id] = newPod(t)
		if err := n.do(func() error {
			_, err := n.cni.AddNetworkList(t.Context(), list, rt(id, pods[id], "eth0"))
			return err
		}); err != nil {
			t.Fatalf("ADD %s through the conflist: %v", id, err)
		}
	}
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS through the conflist: %v", err)
	}
	// A fresh cache, as after a runtime restart: the plugin's GC does
	// the work, not libcni's DEL of what it cached.
	if err := n.do(func() error {
		return freshClient(t, n).GCNetworkList(t.Context(), list, &libcni.GCArgs{
			ValidAttachments: []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}},
		})
	}); err != nil {
		t.Fatalf("GC through the conflist: %v", err)
	}
	leases := n.leases()
	if len(leases) != 1 || leases[0]["id"] != "keep" {
		t.Fatalf("leases after GC: %v, want only keep's", leases)
	}
	if v := n.veths(); len(v) != 1 {
		t.Fatalf("veths after GC: %v, want keep's alone", v)
	}
	if err := inNS(pods["gone"], func() error {
		_, err := net.InterfaceByName("eth0")
		return err
	}); err == nil {
		t.Error("the GC'd pod still has eth0")
	}
}
