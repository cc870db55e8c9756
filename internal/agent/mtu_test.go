package agent_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

func linkMTU(t *testing.T, n *testnet.Node, name string) int {
	t.Helper()
	var mtu int
	n.Do(t, func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		mtu = l.Attrs().MTU
		return nil
	})
	return mtu
}

// addPod runs the conflist the agent of node wrote through the real
// weft-cni, as a container runtime does, and returns the pod's eth0 MTU.
func addPod(t *testing.T, e *env, node string) int {
	t.Helper()
	plugin, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromFile(cniconf.Path(e.confDir(node)))
	if err != nil {
		t.Fatal(err)
	}
	pod := testnet.NewNS(t, "agpod")
	cni := libcni.NewCNIConfigWithCacheDir([]string{filepath.Dir(plugin)}, t.TempDir(), nil)
	rt := &libcni.RuntimeConf{ContainerID: pod.Name, NetNS: pod.Path(), IfName: "eth0"}
	n := e.topo.Nodes[node]
	// The plugin is forked from the thread that Do moved into the node.
	n.Do(t, func() error {
		_, err := cni.AddNetworkList(context.Background(), list, rt)
		return err
	})
	t.Cleanup(func() {
		n.NS.Do(func(ns.NetNS) error { return cni.DelNetworkList(context.Background(), list, rt) })
	})
	var mtu int
	if err := pod.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		mtu = l.Attrs().MTU
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return mtu
}

// `weft agent --mtu` sets the pods' MTU: it is what the node state hands
// the plugin, what the bridge gets, and what a pod gets; without it the
// MTU is still derived from the underlay (1500 − 50 for VXLAN).
func TestMTUOverrideReachesNodeStateBridgeAndPods(t *testing.T) {
	e := newEnv(t, nil, []string{"a", "b"})
	e.start("a", "--mtu", "1400")
	e.start("b")
	e.waitReady("a")
	e.waitReady("b")

	if got := e.state("a").MTU; got != 1400 {
		t.Errorf("node a's state has MTU %d, want the override 1400", got)
	}
	if got := e.state("b").MTU; got != 1450 {
		t.Errorf("node b's state has MTU %d, want 1450 derived from its 1500-byte underlay", got)
	}
	if got := linkMTU(t, e.topo.Nodes["a"], names.Bridge); got != 1400 {
		t.Errorf("node a's bridge has MTU %d, want 1400", got)
	}
	if got := addPod(t, e, "a"); got != 1400 {
		t.Errorf("a pod on node a got MTU %d, want 1400", got)
	}
	if got := addPod(t, e, "b"); got != 1450 {
		t.Errorf("a pod on node b got MTU %d, want 1450", got)
	}
	code, body, err := get(e.topo.Nodes["a"], "/readyz")
	if err != nil || code != 200 {
		t.Fatalf("node a not ready after the pods came: %d %s %v", code, body, err)
	}
}

// A pod MTU that the underlay cannot carry, or below IPv4's minimum, is a
// clear error before any lease is taken, and leaves nothing behind.
func TestMTUOverrideTheUnderlayCannotCarry(t *testing.T) {
	e := newEnv(t, nil, []string{"a"})
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--mtu", "1451"}, "pod MTU 1451 does not fit the underlay: backend auto may carry pod packets in VXLAN, so the pod MTU can be at most eth0's MTU 1500 - 50 = 1450"},
		{[]string{"--mtu", "1451", "--backend", "vxlan"}, "at most eth0's MTU 1500 - 50 = 1450"},
		{[]string{"--mtu", "1501", "--backend", "host-gw"}, "pod MTU 1501 does not fit the underlay: it can be at most eth0's MTU 1500"},
		{[]string{"--mtu", "575"}, "--mtu 575: the pod MTU must be at least 576"},
		{[]string{"--mtu", "-1"}, "--mtu -1: the pod MTU must be at least 576"},
	} {
		e.assertRefused(t, "a", tc.want, tc.flags...)
	}
	assertClean(t, e, "a")
	assertNoKeys(t, e)
	// The largest MTU that fits is taken.
	e.start("a", "--mtu", "1500", "--backend", "host-gw")
	e.waitReady("a")
	if got := e.state("a").MTU; got != 1500 {
		t.Fatalf("with --mtu 1500 and host-gw the state has MTU %d", got)
	}
}
