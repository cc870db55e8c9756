package etcdstore

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/internal/cluster"
)

// Anything with write access to etcd can put any bytes under Weft's keys.
// Whatever the keys and values, folding them into the watch's view never
// panics; a record is kept only under its own name, and every record is
// marked unless the subnets/ keys say that its node holds its subnet.
func FuzzEtcdRecords(f *testing.F) {
	f.Add("nodes/n1", []byte(`{"name":"n1","underlayIP":"172.30.0.1","subnet":"10.244.1.0/24","backend":"vxlan"}`), "subnets/10.244.1.0-24", []byte("n1"))
	f.Add("nodes/n2", []byte(`{"name":"n1","subnet":"10.244.1.0/24"}`), "subnets/10.244.1.0-24", []byte("n1"))
	f.Add("nodes/n3", []byte(`{"name":"n3","underlayIP":"::1","subnet":"0.0.0.0/0"}`), "subnets/0.0.0.0-0", []byte("n3"))
	f.Add("nodes/", []byte(`null`), "subnets/x-y", []byte(""))
	f.Add("nodes/n4", []byte(`{"name":"n4","subnet":"10.244.4.0/24","vtepMAC":"00:00:00:00:00:00"}`), "subnets/10.244.4.0-24", []byte("n5"))
	s := &Store{opts: Config{Prefix: "/weft/"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f.Fuzz(func(t *testing.T, nodeKey string, value []byte, subnetKey string, holder []byte) {
		v := view{nodes: map[string]cluster.Node{}, holders: map[netip.Prefix]string{}}
		s.apply(v, &mvccpb.KeyValue{Key: []byte("/weft/" + subnetKey), Value: holder}, false)
		s.apply(v, &mvccpb.KeyValue{Key: []byte("/weft/" + nodeKey), Value: value}, false)
		for name, n := range v.nodes {
			if n.Name != name {
				t.Fatalf("record of %q kept under %q", n.Name, name)
			}
		}
		for _, n := range v.joined() {
			if h, ok := v.holders[n.Subnet]; (!ok || h != n.Name) && n.NotHeld == "" {
				t.Fatalf("record %+v not marked though etcd says %q holds %s", n, h, n.Subnet)
			}
		}
		s.apply(v, &mvccpb.KeyValue{Key: []byte("/weft/" + nodeKey)}, true)
	})
}
