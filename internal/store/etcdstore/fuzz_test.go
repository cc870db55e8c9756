package etcdstore

import (
	"net/netip"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Anything with write access to etcd can put any bytes under Weft's keys
// it may write. Whatever the keys, values and revisions, folding them into
// the watch's view never panics; a record is kept only under its own name;
// a record goes unmarked only when its node holds the subnet and the
// address it names; and no two unmarked records share a subnet or an
// underlay address.
func FuzzEtcdRecords(f *testing.F) {
	rec := `{"name":"n1","underlayIP":"172.30.0.1","subnet":"10.244.1.0/24","backend":"vxlan"}`
	f.Add("nodes/n1", rec, "claims/subnet/n1", "10.244.1.0/24", "claims/address/n1", "172.30.0.1", "nodes/n2", rec, uint8(3))
	f.Add("nodes/n2", `{"name":"n2","underlayIP":"172.30.0.1","subnet":"10.244.1.0/24"}`, "claims/subnet/n2", "10.244.1.0/24", "claims/address/n2", "172.30.0.1", "alive/n2", "", uint8(9))
	f.Add("nodes/n3", `{"name":"n3","underlayIP":"::1","subnet":"0.0.0.0/0"}`, "subnets/0.0.0.0-0", "n3", "claims/address/n3", "::1", "alive/n3", "", uint8(0))
	f.Add("nodes/", `null`, "subnets/x-y", "", "claims/subnet/", "x", "claims/other/n4", "1", uint8(255))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3, k4, v4 string, revs uint8) {
		v := newView()
		kvs := [][2]string{{k1, v1}, {k2, v2}, {k3, v3}, {k4, v4}}
		// Two fixed records with their claims, then the fuzzed keys on top,
		// at revisions the fuzzer orders.
		base := [][2]string{
			{"claims/subnet/a", "10.244.1.0/24"}, {"claims/address/a", "172.30.0.1"}, {"alive/a", ""},
			{"nodes/a", `{"name":"a","underlayIP":"172.30.0.1","subnet":"10.244.1.0/24"}`},
			{"subnets/10.244.2.0-24", "b"}, {"nodes/b", `{"name":"b","underlayIP":"172.30.0.2","subnet":"10.244.2.0/24"}`},
		}
		for i, kv := range append(base, kvs...) {
			rev := int64(i + 1)
			if i >= len(base) {
				rev = int64(revs>>(2*(i-len(base)))&3) + 1
			}
			// b is an agent of the old layout: its subnets/ key and record
			// on one etcd lease. A fuzzed key may join that lease.
			var lease int64
			if strings.HasPrefix(kv[0], "subnets/") || kv[0] == "nodes/b" || (i >= len(base) && revs&1 == 1) {
				lease = 7
			}
			v.apply(kv[0], &mvccpb.KeyValue{Key: []byte(kv[0]), Value: []byte(kv[1]), CreateRevision: rev, ModRevision: rev, Lease: lease}, false)
		}
		for name, n := range v.nodes {
			if n.record != nil && n.record.Name != name {
				t.Fatalf("record of %q kept under %q", n.record.Name, name)
			}
		}
		o := v.owners()
		legacy := v.legacyNodes()
		subnets, addrs := map[netip.Prefix]string{}, map[netip.Addr]string{}
		for _, r := range v.joined(o) {
			if r.NotHeld != "" {
				continue
			}
			if h := o.subnets[r.Subnet]; h.node != r.Name {
				t.Fatalf("record %+v unmarked though %q holds %s", r, h.node, r.Subnet)
			}
			if a, ok := v.addressOf(r.Name, legacy); !ok || a != r.UnderlayIP || o.addresses[a].node != r.Name {
				t.Fatalf("record %+v unmarked though its address claim is %s (held by %q)", r, a, o.addresses[a].node)
			}
			if other, dup := subnets[r.Subnet]; dup {
				t.Fatalf("%s routed to both %s and %s", r.Subnet, other, r.Name)
			}
			if other, dup := addrs[r.UnderlayIP]; dup {
				t.Fatalf("%s claimed by both %s and %s", r.UnderlayIP, other, r.Name)
			}
			subnets[r.Subnet], addrs[r.UnderlayIP] = r.Name, r.Name
		}
		for _, kv := range kvs {
			v.apply(kv[0], &mvccpb.KeyValue{Key: []byte(kv[0])}, true)
		}
	})
}
