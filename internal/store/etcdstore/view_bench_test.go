package etcdstore

import (
	"encoding/json"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/internal/testkit/fakepeers"
)

// What a watching agent spends on the datastore side of the scale
// benchmark: folding 1000 peers' keys (record and two claims each) into
// the view, then one snapshot with ownership decided and conflicts
// checked for this node.
func BenchmarkView1000Peers(b *testing.B) {
	type kv struct {
		k string
		v []byte
	}
	var kvs []kv
	for _, n := range fakepeers.Nodes(1000) {
		rec, _ := json.Marshal(n)
		kvs = append(kvs, kv{"claims/subnet/" + n.Name, []byte(n.Subnet.String())},
			kv{"claims/address/" + n.Name, []byte(n.UnderlayIP.String())}, kv{"nodes/" + n.Name, rec})
	}
	self := fakepeers.Node(0)
	b.ReportAllocs()
	for b.Loop() {
		v := newView()
		for i, x := range kvs {
			v.apply(x.k, &mvccpb.KeyValue{Value: x.v, CreateRevision: int64(i + 1), ModRevision: int64(i + 1)}, false)
		}
		o := v.owners()
		v.conflicts(o, self.Name, self.Subnet, self.UnderlayIP)
		if got := v.joined(o); len(got) != 1000 || got[0].NotHeld != "" {
			b.Fatalf("%d records, first %+v", len(got), got[0])
		}
	}
}
