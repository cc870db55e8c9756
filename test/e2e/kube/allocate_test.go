package kube

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/lab/controlplane"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/kubestore"
)

func allocStore(t *testing.T, cfg *rest.Config, node string, cidr netip.Prefix) *kubestore.Store {
	t.Helper()
	s, err := kubestore.Open(kubestore.Config{Client: dynClient(t, cfg), NodeName: node, AllocateSubnets: true,
		ClusterCIDR: cidr, SubnetLen: 24, AllocateGrace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// In a cluster whose controller-manager allocates no podCIDRs, agents that
// start together get distinct subnets, recorded as their Nodes' podCIDRs;
// a restarted agent keeps its subnet; a full cluster CIDR is a clear
// error; the subnet of a deleted Node is given out again.
func TestKubeStoreAllocatesWithoutNodeIPAM(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	controlPlane := controlplane.StartT(t, controlplane.Options{Prefix: "wtk-kube", NoNodeIPAM: true})
	cs, err := controlPlane.Client()
	if err != nil {
		t.Fatal(err)
	}
	cidr := netip.MustParsePrefix("10.250.0.0/22") // room for four /24s
	nodes := []string{uniq("n0"), uniq("n1"), uniq("n2"), uniq("n3")}
	for _, n := range nodes {
		createNode(t, cs, n)
	}
	leases := make([]store.Lease, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			leases[i], errs[i] = allocStore(t, controlPlane.RESTConfig(), n, cidr).AcquireLease(ctx, n, netip.Prefix{})
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]string{}
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("AcquireLease(%s): %v", n, errs[i])
		}
		sub := leases[i].Subnet
		if other, dup := seen[sub]; dup {
			t.Fatalf("%s and %s both got %s", other, n, sub)
		}
		seen[sub] = n
		if !cidr.Contains(sub.Addr()) || sub.Bits() != 24 {
			t.Fatalf("%s got %s, not a /24 of %s", n, sub, cidr)
		}
		node, err := cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil || node.Spec.PodCIDR != sub.String() {
			t.Fatalf("node %s: podCIDR %q, lease %s (%v)", n, node.Spec.PodCIDR, sub, err)
		}
	}

	again, err := allocStore(t, controlPlane.RESTConfig(), nodes[2], cidr).AcquireLease(context.Background(), nodes[2], netip.Prefix{})
	if err != nil || again.Subnet != leases[2].Subnet {
		t.Fatalf("restarted agent got %v, %v; want %s", again, err, leases[2].Subnet)
	}

	fifth := uniq("n4")
	createNode(t, cs, fifth)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = allocStore(t, controlPlane.RESTConfig(), fifth, cidr).AcquireLease(ctx, fifth, netip.Prefix{})
	if !errors.Is(err, store.ErrCIDRExhausted) {
		t.Fatalf("fifth node in a full /22: %v, want ErrCIDRExhausted", err)
	}

	if err := cs.CoreV1().Nodes().Delete(context.Background(), nodes[1], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := allocStore(t, controlPlane.RESTConfig(), fifth, cidr).AcquireLease(ctx, fifth, netip.Prefix{})
	if err != nil || l.Subnet != leases[1].Subnet {
		t.Fatalf("after %s left, %s got %v, %v; want %s", nodes[1], fifth, l.Subnet, err, leases[1].Subnet)
	}
}

// With allocation turned on in a cluster that has node IPAM, Weft leaves
// the podCIDR to the controller-manager.
func TestKubeStoreAllocationDefersToControllerManager(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	name := uniq("defer")
	createNode(t, cs, name)
	s, err := kubestore.Open(kubestore.Config{Client: dynClient(t, controlPlane.RESTConfig()), NodeName: name, AllocateSubnets: true,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	l := acquire(t, s, name)
	claims, err := cs.CoordinationV1().Leases("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "weft.dev/subnet-claim=true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range claims.Items {
		if c.Spec.HolderIdentity != nil && *c.Spec.HolderIdentity == name {
			t.Fatalf("weft claimed %s although the controller-manager allocates", c.Name)
		}
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if n.Spec.PodCIDR != l.Subnet.String() {
		t.Fatalf("lease %s, podCIDR %s", l.Subnet, n.Spec.PodCIDR)
	}
}
