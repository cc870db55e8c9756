package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/kubestore"
)

var clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

func newStore(t *testing.T, cfg *rest.Config, node string) *kubestore.Store {
	t.Helper()
	s, err := kubestore.Open(kubestore.Config{Client: dynClient(t, cfg), NodeName: node, ClusterCIDR: clusterCIDR})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// watcher runs Watch in the background and keeps the last set it got.
type watcher struct {
	mu     sync.Mutex
	last   []cluster.Node
	calls  int
	cancel context.CancelFunc
	done   chan error
}

func watch(t *testing.T, s store.Store) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- s.Watch(ctx, func(ns []cluster.Node) {
			w.mu.Lock()
			w.last = ns
			w.calls++
			w.mu.Unlock()
		})
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
}

func (w *watcher) set() map[string]cluster.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]cluster.Node{}
	for _, n := range w.last {
		m[n.Name] = n
	}
	return m
}

// count is how many sets the watch has delivered.
func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

// waitNames waits until the set's node names among only are want.
func (w *watcher) waitNames(t *testing.T, timeout time.Duration, what, want string, only ...string) {
	t.Helper()
	testnet.Eventually(t, timeout, what, func() error {
		if got := w.names(only...); got != want {
			return fmt.Errorf("set %s", got)
		}
		return nil
	})
}

// names is the set's node names among only (other tests' nodes may exist).
func (w *watcher) names(only ...string) string {
	set := w.set()
	var out []string
	for _, n := range only {
		if _, ok := set[n]; ok {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

func record(name string, sub netip.Prefix, ip string) cluster.Node {
	return cluster.Node{
		Name:       name,
		UnderlayIP: netip.MustParseAddr(ip),
		Subnet:     sub,
		VTEPMAC:    "02:00:00:00:00:01",
		Backend:    cluster.BackendVXLAN,
		ProbePort:  9754,
		Version:    "test",
	}
}

// The lease is the podCIDR that the real controller-manager assigns; an
// agent started before its Node is registered waits for it; a restarted
// agent gets the same subnet; a deleted Node loses it.
func TestKubeStoreLeaseIsPodCIDR(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	name := uniq("lease")
	s := newStore(t, controlPlane.RESTConfig(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type res struct {
		l   store.Lease
		err error
	}
	got := make(chan res, 1)
	go func() {
		l, err := s.AcquireLease(ctx, name, netip.Prefix{})
		got <- res{l, err}
	}()
	// The agent is waiting for a Node that does not exist yet.
	testnet.Eventually(t, 10*time.Second, "store reports the missing node", func() error {
		if s.Err() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	createNode(t, cs, name)
	r := <-got
	if r.err != nil {
		t.Fatalf("AcquireLease: %v", r.err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR == "" || r.l.Subnet.String() != n.Spec.PodCIDR {
		t.Fatalf("lease %s, node's podCIDR %q", r.l.Subnet, n.Spec.PodCIDR)
	}
	if r.l.Subnet.Bits() != 24 || !clusterCIDR.Contains(r.l.Subnet.Addr()) {
		t.Fatalf("lease %s is not a /24 of %s", r.l.Subnet, clusterCIDR)
	}
	if r.l.Node != name || !r.l.Expires.IsZero() {
		t.Fatalf("lease %+v", r.l)
	}
	if s.Err() != nil {
		t.Fatalf("Err after success: %v", s.Err())
	}

	again, err := newStore(t, controlPlane.RESTConfig(), name).AcquireLease(ctx, name, netip.Prefix{})
	if err != nil || again.Subnet != r.l.Subnet {
		t.Fatalf("restarted agent got %v, %v; want %s", again, err, r.l.Subnet)
	}
	if _, err := s.RenewLease(ctx, r.l); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewLease(ctx, r.l); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("RenewLease of a deleted node: %v, want ErrLeaseLost", err)
	}
}

// A podCIDR outside the cluster CIDR Weft was given is a clear error, not
// a datapath that silently masquerades pod traffic.
func TestKubeStoreRejectsPodCIDROutsideClusterCIDR(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	name := uniq("out")
	createNode(t, cs, name)
	s, err := kubestore.Open(kubestore.Config{Client: dynClient(t, controlPlane.RESTConfig()), NodeName: name, ClusterCIDR: netip.MustParsePrefix("10.99.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s.AcquireLease(ctx, name, netip.Prefix{})
	if err == nil || !strings.Contains(err.Error(), "outside Weft's cluster CIDR 10.99.0.0/16") {
		t.Fatalf("AcquireLease: %v", err)
	}
}

func acquire(t *testing.T, s store.Store, node string) store.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := s.AcquireLease(ctx, node, netip.Prefix{})
	if err != nil {
		t.Fatalf("AcquireLease(%s): %v", node, err)
	}
	return l
}

func publish(t *testing.T, s store.Store, n cluster.Node) {
	t.Helper()
	if err := s.Publish(context.Background(), n); err != nil {
		t.Fatalf("Publish(%s): %v", n.Name, err)
	}
}

// Records go into the own Node's annotations and come back, exactly, in
// every watcher's full set; Nodes without Weft are not peers; a changed
// record and a deleted Node reach the watchers.
func TestKubeStorePublishAndWatch(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	a, b, c := uniq("a"), uniq("b"), uniq("c")
	for _, n := range []string{a, b, c} {
		createNode(t, cs, n)
	}
	sa, sb := newStore(t, controlPlane.RESTConfig(), a), newStore(t, controlPlane.RESTConfig(), b)
	la, lb := acquire(t, sa, a), acquire(t, sb, b)
	acquire(t, newStore(t, controlPlane.RESTConfig(), c), c) // has a podCIDR but publishes nothing

	ra, rb := record(a, la.Subnet, "192.0.2.1"), record(b, lb.Subnet, "192.0.2.2")
	publish(t, sa, ra)
	publish(t, sb, rb)

	node, err := cs.CoreV1().Nodes().Get(context.Background(), a, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Annotations[kubestore.AnnotUnderlayIP]; got != "192.0.2.1" {
		t.Fatalf("annotation %s = %q", kubestore.AnnotUnderlayIP, got)
	}

	w := watch(t, sa)
	testnet.Eventually(t, 10*time.Second, "watch shows a and b", func() error {
		set := w.set()
		if set[a] != ra || set[b] != rb {
			return fmt.Errorf("got %+v", set)
		}
		if _, ok := set[c]; ok {
			return fmt.Errorf("node %s without a Weft record is a peer", c)
		}
		return nil
	})

	// Publishing the same record again writes nothing.
	before := node.ResourceVersion
	publish(t, sa, ra)
	node, _ = cs.CoreV1().Nodes().Get(context.Background(), a, metav1.GetOptions{})
	if node.ResourceVersion != before {
		t.Fatalf("an unchanged record was written again")
	}

	// A VTEP MAC that changes (the node rebooted) reaches the peers.
	rb.VTEPMAC = "02:00:00:00:00:99"
	publish(t, sb, rb)
	testnet.Eventually(t, 10*time.Second, "watch shows b's new MAC", func() error {
		if got := w.set()[b].VTEPMAC; got != rb.VTEPMAC {
			return fmt.Errorf("MAC %q", got)
		}
		return nil
	})

	// An agent writes only its own Node.
	if err := sa.Publish(context.Background(), record(b, lb.Subnet, "192.0.2.66")); err == nil {
		t.Fatal("agent a published node b's record")
	}
	if err := sa.Publish(context.Background(), record(a, lb.Subnet, "192.0.2.1")); err == nil {
		t.Fatal("agent a published a subnet that is not its podCIDR")
	}

	if err := cs.CoreV1().Nodes().Delete(context.Background(), b, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitNames(t, 10*time.Second, "b leaves the set", a, a, b, c)

	// Remove takes a's record off its Node: it is no peer any more.
	if err := sa.Remove(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	w.waitNames(t, 10*time.Second, "a leaves the set", "", a, b, c)
	node, _ = cs.CoreV1().Nodes().Get(context.Background(), a, metav1.GetOptions{})
	for k := range node.Annotations {
		if strings.HasPrefix(k, kubestore.AnnotationPrefix) {
			t.Fatalf("annotation %s left after Remove", k)
		}
	}
}

// An agent that was not running while a Node was deleted sees the current
// set when it starts again, without that Node.
func TestKubeStoreMissedDelete(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	a, b := uniq("a"), uniq("b")
	createNode(t, cs, a)
	createNode(t, cs, b)
	sa, sb := newStore(t, controlPlane.RESTConfig(), a), newStore(t, controlPlane.RESTConfig(), b)
	publish(t, sa, record(a, acquire(t, sa, a).Subnet, "192.0.2.1"))
	publish(t, sb, record(b, acquire(t, sb, b).Subnet, "192.0.2.2"))

	w := watch(t, sa)
	w.waitNames(t, 10*time.Second, "both in the set", a+","+b, a, b)
	w.stop() // agent a is down
	if err := cs.CoreV1().Nodes().Delete(context.Background(), b, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w2 := watch(t, newStore(t, controlPlane.RESTConfig(), a))
	testnet.Eventually(t, 10*time.Second, "first set after restart", func() error {
		calls := w2.count()
		if calls == 0 {
			return errors.New("no set yet")
		}
		return nil
	})
	if got := w2.names(a, b); got != a {
		t.Fatalf("first set after restart has %s, want only %s", got, a)
	}
}

// A Node with malformed Weft annotations is left out; the others are not.
func TestKubeStoreMalformedRecord(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cs := admin(t)
	a, bad := uniq("a"), uniq("bad")
	createNode(t, cs, a)
	createNode(t, cs, bad)
	sa := newStore(t, controlPlane.RESTConfig(), a)
	publish(t, sa, record(a, acquire(t, sa, a).Subnet, "192.0.2.1"))
	acquire(t, newStore(t, controlPlane.RESTConfig(), bad), bad)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"not-an-ip"}}}`, kubestore.AnnotUnderlayIP)
	if _, err := cs.CoreV1().Nodes().Patch(context.Background(), bad, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w := watch(t, sa)
	testnet.Eventually(t, 10*time.Second, "set", func() error {
		calls := w.count()
		if calls == 0 {
			return errors.New("no set yet")
		}
		if got := w.names(a, bad); got != a {
			return fmt.Errorf("set %s", got)
		}
		return nil
	})
}
