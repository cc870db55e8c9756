package etcdstore_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// An agent that was down longer than its lease (a crash loop, a reboot)
// asks for the subnet its pods still use: it gets that one back while it
// is free, not the lowest free subnet, so the pods stay routable.
func TestLapsedNodeGetsTheSubnetItsPodsUseBack(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	s := open(t, srv, prefix, "10.244.0.0/16", 24)
	first := acquire(t, s, "node-first")
	a := acquire(t, s, "node-a")
	if first.Subnet == a.Subnet {
		t.Fatalf("two nodes hold %s", a.Subnet)
	}
	// node-first leaves, freeing the lowest subnet; node-a's lease lapses
	// and its claim is gone too (etcd restored from an old backup, say).
	if err := s.Remove(ctx, "node-first"); err != nil {
		t.Fatal(err)
	}
	lapse(t, srv, prefix, "node-a")
	if _, err := rawClient(t, srv).Delete(ctx, etcdstore.SubnetClaimKey(prefix, "node-a")); err != nil {
		t.Fatal(err)
	}

	// A fresh process (the restarted agent) with what node.json says.
	again, err := open(t, srv, prefix, "10.244.0.0/16", 24).AcquireLease(ctx, "node-a", a.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	if again.Subnet != a.Subnet {
		t.Fatalf("node-a came back on %s, want %s (the subnet its pods use); lowest free was %s", again.Subnet, a.Subnet, first.Subnet)
	}

	// A preferred subnet that another node holds, or that is not a subnet
	// of this cluster, is not taken.
	b, err := open(t, srv, prefix, "10.244.0.0/16", 24).AcquireLease(ctx, "node-b", a.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	if b.Subnet == a.Subnet {
		t.Fatalf("node-b was given node-a's subnet %s", a.Subnet)
	}
	c, err := open(t, srv, prefix, "10.244.0.0/16", 24).AcquireLease(ctx, "node-c", netip.MustParsePrefix("10.99.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet.Addr().As4()[0] != 10 || c.Subnet.Addr().As4()[1] != 244 {
		t.Fatalf("node-c got %s outside the cluster CIDR", c.Subnet)
	}
}
