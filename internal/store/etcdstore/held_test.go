package etcdstore_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// A record can name any subnet; Watch marks the records whose node does
// not hold the subnet and the address they name, so that no peer routes
// them.
func TestWatchMarksRecordsWhoseSubnetTheNodeDoesNotHold(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := uniquePrefix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := open(t, srv, prefix, "10.244.0.0/16", 24)
	lb, err := s.AcquireLease(ctx, "b", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	b := cluster.Node{Name: "b", UnderlayIP: netip.MustParseAddr("172.30.1.2"), Subnet: lb.Subnet}
	if err := s.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	// The impostor's name sorts first; "squatter" names a subnet no node
	// holds. Both are written the way any etcd client could, without
	// claims.
	cli := rawClient(t, srv)
	for _, n := range []cluster.Node{
		{Name: "0-impostor", UnderlayIP: netip.MustParseAddr("172.30.1.9"), Subnet: lb.Subnet},
		{Name: "squatter", UnderlayIP: netip.MustParseAddr("172.30.1.8"), Subnet: netip.MustParsePrefix("10.244.99.0/24")},
	} {
		v, _ := json.Marshal(n)
		if _, err := cli.Put(ctx, etcdstore.NodeKey(prefix, n.Name), string(v)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []cluster.Node, 16)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.Watch(wctx, func(ns []cluster.Node) { got <- ns })
	for {
		select {
		case ns := <-got:
			marks := map[string]string{}
			for _, n := range ns {
				marks[n.Name] = n.NotHeld
			}
			if len(marks) != 3 {
				continue
			}
			if marks["b"] != "" || marks["0-impostor"] == "" || marks["squatter"] == "" {
				t.Fatalf("marks %q: want b's record clean and the other two marked", marks)
			}
			return
		case <-ctx.Done():
			t.Fatal("Watch never delivered the three records")
		}
	}
}
