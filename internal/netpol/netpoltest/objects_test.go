package netpoltest_test

import (
	"reflect"
	"testing"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
)

// The API-shaped objects decode to the synthetic cluster they stand for,
// so a memory figure taken with them is one of the same cluster.
func TestObjectsDecodeToTheCluster(t *testing.T) {
	s := netpoltest.Scale{Pods: 300, Namespaces: 10, Policies: 40, Local: 50}
	want := s.Cluster()
	nss, pods, pols := s.Objects()
	got := netpol.Input{Node: want.Node, NodeCIDRs: want.NodeCIDRs}
	for _, o := range nss {
		got.Namespaces = append(got.Namespaces, netpol.DecodeNamespace(o))
	}
	for _, o := range pods {
		p, ok, err := netpol.DecodePod(o)
		if err != nil || !ok {
			t.Fatalf("pod: ok %v err %v", ok, err)
		}
		got.Pods = append(got.Pods, p)
	}
	for _, o := range pols {
		p, err := netpol.DecodePolicy(o)
		if err != nil {
			t.Fatal(err)
		}
		got.Policies = append(got.Policies, p)
	}
	if !reflect.DeepEqual(netpol.Compile(got), netpol.Compile(want)) {
		t.Fatal("the decoded objects compile to another State than the cluster")
	}
}
