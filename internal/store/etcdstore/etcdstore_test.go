package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.ServeIfAsked()
	os.Exit(m.Run())
}

// open returns a store on srv under a key prefix of this test's own.
func open(t *testing.T, srv interface{ URL() string }, prefix, cidr string, subnetLen int) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints:   []string{srv.URL()},
		Prefix:      prefix,
		ClusterCIDR: netip.MustParsePrefix(cidr),
		SubnetLen:   subnetLen,
		TTL:         10 * time.Second,
		OpTimeout:   2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func uniquePrefix() string { return fmt.Sprintf("/wta%06d/", rand.IntN(1e6)) }

func rawClient(t *testing.T, srv interface{ URL() string }) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.URL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLeasesAreDistinctKeptAcrossRestartAndExhaust(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	const cidr = "10.244.0.0/23" // room for exactly two /24s

	a := open(t, srv, prefix, cidr, 24)
	la := acquire(t, a, "node-a")
	b := open(t, srv, prefix, cidr, 24)
	lb := acquire(t, b, "node-b")
	if la.Subnet == lb.Subnet {
		t.Fatalf("both nodes hold %s", la.Subnet)
	}
	for _, l := range []store.Lease{la, lb} {
		if !netip.MustParsePrefix(cidr).Contains(l.Subnet.Addr()) || l.Subnet.Bits() != 24 {
			t.Fatalf("lease %+v is not a /24 of %s", l, cidr)
		}
		if time.Until(l.Expires) <= 0 {
			t.Fatalf("lease %+v has no future expiry", l)
		}
	}

	// A restarted agent (a new client, same node name) gets its subnet back.
	a2 := open(t, srv, prefix, cidr, 24)
	la2 := acquire(t, a2, "node-a")
	if la2.Subnet != la.Subnet {
		t.Fatalf("restarted node-a got %s, held %s before", la2.Subnet, la.Subnet)
	}

	c := open(t, srv, prefix, cidr, 24)
	_, err := c.AcquireLease(ctx, "node-c", netip.Prefix{})
	if !errors.Is(err, store.ErrCIDRExhausted) {
		t.Fatalf("third node in a /23 of /24s: got %v, want ErrCIDRExhausted", err)
	}
	for _, want := range []string{"node-c", "10.244.0.0/23", "/24", "2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("exhaustion error %q does not mention %q", err, want)
		}
	}

	// Once a node leaves, its subnet is free again.
	if err := b.Remove(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	lc := acquire(t, c, "node-c")
	if lc.Subnet != lb.Subnet {
		t.Fatalf("node-c got %s, want node-b's freed %s", lc.Subnet, lb.Subnet)
	}
}

func TestConcurrentAcquireNeverSharesASubnet(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := uniquePrefix()
	const n = 12
	var wg sync.WaitGroup
	leases := make([]store.Lease, n)
	errs := make([]error, n)
	for i := range n {
		s := open(t, srv, prefix, "10.244.0.0/16", 24)
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = s.AcquireLease(context.Background(), fmt.Sprintf("node-%d", i), netip.Prefix{})
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]string{}
	for i, l := range leases {
		if errs[i] != nil {
			t.Fatalf("node-%d: %v", i, errs[i])
		}
		if other, dup := seen[l.Subnet]; dup {
			t.Fatalf("%s leased to both %s and %s", l.Subnet, other, l.Node)
		}
		seen[l.Subnet] = l.Node
	}
}

// watcher collects Watch snapshots for polling.
type watcher struct {
	mu   sync.Mutex
	last []cluster.Node
	n    int
}

func watch(t *testing.T, s store.Store) *watcher {
	w := &watcher{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, func(ns []cluster.Node) {
			w.mu.Lock()
			w.last, w.n = ns, w.n+1
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// snapshots is how many snapshots Watch delivered so far.
func (w *watcher) snapshots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// waitFor polls the latest snapshot until ok holds.
func (w *watcher) waitFor(t *testing.T, what string, ok func([]cluster.Node) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		last, n := w.last, w.n
		w.mu.Unlock()
		if n > 0 && ok(last) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("watch never showed %s; last snapshot: %+v", what, w.last)
}

func names(ns []cluster.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

// acquire takes node's lease through s.
func acquire(t *testing.T, s *etcdstore.Store, node string) store.Lease {
	t.Helper()
	l, err := s.AcquireLease(context.Background(), node, netip.Prefix{})
	if err != nil {
		t.Fatalf("acquire the lease of %s: %v", node, err)
	}
	return l
}

func record(l store.Lease, ip string) cluster.Node {
	return cluster.Node{Name: l.Node, UnderlayIP: netip.MustParseAddr(ip), Subnet: l.Subnet, Backend: cluster.BackendAuto, VTEPMAC: "0e:57:ac:1e:00:01"}
}

func TestWatchSnapshotsFollowPublishRemoveAndLapse(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	a := open(t, srv, prefix, "10.244.0.0/16", 24)
	b := open(t, srv, prefix, "10.244.0.0/16", 24)
	w := watch(t, open(t, srv, prefix, "10.244.0.0/16", 24))
	w.waitFor(t, "an empty cluster", func(ns []cluster.Node) bool { return len(ns) == 0 })

	la := acquire(t, a, "node-a")
	lb := acquire(t, b, "node-b")
	ra := record(la, "172.30.0.1")
	if err := a.Publish(ctx, ra); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, record(lb, "172.30.0.2")); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "node-a and node-b", func(ns []cluster.Node) bool {
		return names(ns) == "node-a,node-b" && ns[0] == ra
	})

	if err := b.Remove(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "node-b gone", func(ns []cluster.Node) bool { return names(ns) == "node-a" })

	// node-a's etcd lease lapses (as after an outage longer than the TTL):
	// its record stays, and peers keep routing to it, since no other node
	// claimed its subnet; its next renewal makes it a running node again,
	// on the same subnet.
	lapse(t, srv, prefix, "node-a")
	w.waitFor(t, "node-a still routable after its lease lapsed", func(ns []cluster.Node) bool {
		return names(ns) == "node-a" && ns[0].NotHeld == ""
	})
	la2, err := a.RenewLease(ctx, la)
	if err != nil {
		t.Fatal(err)
	}
	if la2.Subnet != la.Subnet {
		t.Fatalf("renewal after lapse moved node-a from %s to %s", la.Subnet, la2.Subnet)
	}
	w.waitFor(t, "node-a routable", func(ns []cluster.Node) bool { return names(ns) == "node-a" && ns[0] == ra })
}

// lapse revokes node's etcd lease, as if its agent had not renewed it for
// the TTL: its alive key goes.
func lapse(t *testing.T, srv interface{ URL() string }, prefix, node string) {
	t.Helper()
	lapseWith(t, rawClient(t, srv), prefix, node)
}

func lapseWith(t *testing.T, cli *clientv3.Client, prefix, node string) {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.Get(ctx, etcdstore.AliveKey(prefix, node))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("%s has no alive key on an etcd lease: %v %+v", node, err, resp)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
}

// A node that lapsed and came back after another node claimed its subnet
// has lost it: its renewal says so.
func TestRenewAfterSubnetTakenIsLeaseLost(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	a := open(t, srv, prefix, "10.244.0.0/16", 24)
	la := acquire(t, a, "node-a")
	lapse(t, srv, prefix, "node-a")
	b := open(t, srv, prefix, "10.244.0.0/16", 24)
	lb, err := b.AcquireLease(ctx, "node-b", la.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	if lb.Subnet != la.Subnet {
		t.Fatalf("node-b got %s, want the lapsed %s it asked for", lb.Subnet, la.Subnet)
	}
	if _, err := a.RenewLease(ctx, la); !errors.Is(err, store.ErrLeaseLost) || !strings.Contains(err.Error(), "node-b") {
		t.Fatalf("renewing a subnet another node took: got %v, want ErrLeaseLost naming node-b", err)
	}
}

func TestWatchAndLeaseSurviveEtcdOutage(t *testing.T) {
	srv := etcdtest.StartProc(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	a := open(t, srv, prefix, "10.244.0.0/16", 24)
	la := acquire(t, a, "node-a")
	if err := a.Publish(ctx, record(la, "172.30.0.1")); err != nil {
		t.Fatal(err)
	}
	w := watch(t, a)
	w.waitFor(t, "node-a", func(ns []cluster.Node) bool { return names(ns) == "node-a" })

	srv.Stop()
	if _, err := a.RenewLease(ctx, la); err == nil {
		t.Fatal("renewal with etcd stopped succeeded")
	}
	if a.Err() == nil {
		t.Fatal("Err() is nil while etcd is down")
	}
	srv.Restart(t)

	var renewErr error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, renewErr = a.RenewLease(ctx, la); renewErr == nil {
			break
		}
	}
	if renewErr != nil {
		t.Fatalf("renewal after etcd came back: %v", renewErr)
	}
	if a.Err() != nil {
		t.Fatalf("Err() = %v after etcd came back", a.Err())
	}
	b := open(t, srv, prefix, "10.244.0.0/16", 24)
	lb := acquire(t, b, "node-b")
	if err := b.Publish(ctx, record(lb, "172.30.0.2")); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "node-b, joined after the outage", func(ns []cluster.Node) bool { return names(ns) == "node-a,node-b" })
}

func TestBadOptionsAreClearErrors(t *testing.T) {
	for _, tc := range []struct {
		opts etcdstore.Config
		want string
	}{
		{etcdstore.Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24}, "no endpoints"},
		{etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 16}, "subnet length"},
		{etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, ClusterCIDR: netip.MustParsePrefix("fd00::/64"), SubnetLen: 80}, "IPv4"},
		{etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, TTL: time.Second}, "TTL"},
		{etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, CertFile: "/x"}, "certificate and its key"},
	} {
		_, err := etcdstore.Open(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error about %q", tc.opts, err, tc.want)
		}
	}
}
