package firewall_test

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// When the guard first appears on a node whose pods already run (the
// first install, an upgrade from a Weft without it), the table is made
// already holding them: their traffic passes from the guard's first
// moment, before any sync, while a pod nobody listed is held back.
func TestGuardMadeWithTheRunningPods(t *testing.T) {
	topo := testnet.NewTopo(t, "fws", []string{"a"})
	a := topo.Nodes["a"]
	a.Do(t, func() error {
		_, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.244.1.1/24"), 1500)
		return err
	})
	p1 := addPod(t, topo, a, "p1", "10.244.1.2/24")
	p2 := addPod(t, topo, a, "p2", "10.244.1.3/24")
	p3 := addPod(t, topo, a, "p3", "10.244.1.4/24")

	a.Do(t, func() error {
		return firewall.EnsureWithPods(cidr, func() ([]firewall.Pod, error) { return []firewall.Pod{p1.guard, p2.guard}, nil })
	})
	if _, err := testnet.SeenAs(p1.Node, p1.IP, p2.Node, p2.IP, 3); err != nil {
		t.Errorf("a running pod is cut off when the guard is made: %v", err)
	}
	if _, err := testnet.SeenAs(p3.Node, p3.IP, p2.Node, p2.IP, 3); err == nil {
		t.Error("a pod that was not listed passed the new guard")
	}
	// Ensuring again (the table is right) keeps the pods.
	a.Do(t, func() error { return firewall.EnsureWithPods(cidr, nil) })
	if _, err := testnet.SeenAs(p1.Node, p1.IP, p2.Node, p2.IP, 3); err != nil {
		t.Errorf("after a second Ensure: %v", err)
	}
}
