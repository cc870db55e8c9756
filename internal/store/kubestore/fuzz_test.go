package kubestore

import (
	"encoding/json"
	"net"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A Node is written by kubelet, the controller-manager and anyone with
// patch rights on it, so the store reads it as untrusted input: whatever
// JSON a Node holds, reading it never panics, and a record it yields is
// one the datapath can use (an IPv4 underlay address, the Node's own
// podCIDR as its subnet, a well-formed VTEP MAC and probe port).
func FuzzNodeRecord(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"n1","annotations":{"weft.dev/underlay-ip":"172.30.0.1","weft.dev/vtep-mac":"0e:57:ac:1e:00:01","weft.dev/backend":"vxlan","weft.dev/probe-port":"9754"}},"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]}}`))
	f.Add([]byte(`{"metadata":{"name":"n2","annotations":{"weft.dev/underlay-ip":"::1"}},"spec":{"podCIDR":"0.0.0.0/0"}}`))
	f.Add([]byte(`{"metadata":{"name":"n3","annotations":{"weft.dev/underlay-ip":"172.30.0.3","weft.dev/vtep-mac":"zz"}},"spec":{"podCIDR":7}}`))
	f.Add([]byte(`{"metadata":{"name":"n4","annotations":{"weft.dev/underlay-ip":"172.30.0.4","weft.dev/probe-port":"-1"}},"spec":{"podCIDRs":["10.244.4.0/24","fd00::/64"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var obj map[string]any
		if json.Unmarshal(b, &obj) != nil {
			return
		}
		u := &unstructured.Unstructured{Object: obj}
		n, err := nodeFrom(u)
		if err != nil {
			return
		}
		rec, ok, err := record(n)
		if err != nil || !ok {
			return
		}
		if !rec.UnderlayIP.IsValid() {
			t.Fatalf("record with no underlay address: %+v", rec)
		}
		if !rec.Subnet.IsValid() {
			t.Fatalf("record with no subnet: %+v", rec)
		}
		if rec.VTEPMAC != "" {
			if _, err := net.ParseMAC(rec.VTEPMAC); err != nil {
				t.Fatalf("record with a bad VTEP MAC %q", rec.VTEPMAC)
			}
		}
		if rec.ProbePort < 0 || rec.ProbePort > 65535 {
			t.Fatalf("record with probe port %d", rec.ProbePort)
		}
	})
}
