package etcdstore_test

import (
	"context"
	"testing"

	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// LastContact is what `weft status` shows while etcd is unreachable: it
// moves with every answered call and stands still while etcd is down.
func TestLastContactFollowsAnsweredCalls(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, uniquePrefix(), "10.244.0.0/16", 24)
	if !s.LastContact().IsZero() {
		t.Fatalf("LastContact before any call = %s, want zero", s.LastContact())
	}
	ctx := context.Background()
	if err := s.Remove(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	answered := s.LastContact()
	if answered.IsZero() {
		t.Fatal("LastContact is zero after an answered call")
	}
	srv.Stop()
	if err := s.Remove(ctx, "node-a"); err == nil {
		t.Fatal("Remove with etcd stopped succeeded")
	}
	if got := s.LastContact(); !got.Equal(answered) {
		t.Errorf("LastContact moved to %s on a failed call; want %s", got, answered)
	}
	if s.Err() == nil {
		t.Error("Err is nil after a failed call")
	}
}
