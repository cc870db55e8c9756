package kube

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/lab/controlplane"
)

// While the API server is down the store keeps quiet (the caller keeps
// its last set, so pods keep their routes), says what is wrong, and fails
// writes; when it is back, the watch resumes on its own and catches up
// with what changed.
func TestKubeStoreAPIServerDown(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	// A control plane of its own: after an outage, kube-controller-manager
	// takes a while to resync, which other tests should not wait for.
	controlPlane := controlplane.StartT(t, controlplane.Options{Prefix: "wtk-kube"})
	cs, err := controlPlane.Client()
	if err != nil {
		t.Fatal(err)
	}
	a, b := uniq("a"), uniq("b")
	createNode(t, cs, a)
	createNode(t, cs, b)
	sa, sb := newStore(t, controlPlane.RESTConfig(), a), newStore(t, controlPlane.RESTConfig(), b)
	ra := record(a, acquire(t, sa, a).Subnet, "192.0.2.1")
	publish(t, sa, ra)
	publish(t, sb, record(b, acquire(t, sb, b).Subnet, "192.0.2.2"))
	w := watch(t, sa)
	w.waitNames(t, 10*time.Second, "both in the set", a+","+b, a, b)
	callsBefore := w.count()

	controlPlane.StopAPIServer()
	down := time.Now()
	testnet.Eventually(t, 30*time.Second, "the watch reports the API server down", func() error {
		if sa.Err() == nil {
			return errors.New("Err() is nil")
		}
		return nil
	})
	t.Logf("the store reported %q %s after the API server stopped", sa.Err(), time.Since(down).Round(time.Millisecond))
	if err := sa.Publish(context.Background(), ra); err == nil {
		t.Fatal("Publish worked with the API server down")
	}
	// Give the informer time to misbehave, if it would.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		calls := w.count()
		if calls != callsBefore {
			t.Fatalf("the watch delivered a set while the API server was down: %v", w.names(a, b))
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := controlPlane.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := cs.CoreV1().Nodes().Delete(context.Background(), b, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitNames(t, 30*time.Second, "the watch resumes and b leaves", a, a, b)
	t.Logf("the watch caught up %s after the API server was ready again", time.Since(back).Round(time.Millisecond))
	testnet.Eventually(t, 10*time.Second, "the store is healthy again", func() error {
		if err := sa.Publish(context.Background(), ra); err != nil {
			return err
		}
		return sa.Err()
	})
}
