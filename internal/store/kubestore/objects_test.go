package kubestore

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The store's behaviour against a real API server is tested in
// test/e2e/kube; these pin what it reads of a Node and what it links.

func wireNode() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":              "wtg-n1",
			"uid":               "1234",
			"resourceVersion":   "42",
			"creationTimestamp": "2026-01-02T03:04:05Z",
			"annotations": map[string]any{
				AnnotUnderlayIP:                "192.0.2.7",
				AnnotVTEPMAC:                   "02:00:00:00:00:07",
				AnnotBackend:                   "vxlan",
				AnnotProbePort:                 "8473",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			"labels": map[string]any{"kubernetes.io/hostname": "wtg-n1"},
		},
		"spec": map[string]any{
			"podCIDR":  "10.244.7.0/24",
			"podCIDRs": []any{"10.244.7.0/24", "fd00:7::/64"},
			"taints":   []any{map[string]any{"key": "k", "effect": "NoSchedule"}},
		},
		"status": map[string]any{"images": []any{map[string]any{"names": []any{"x"}}}},
	}}
}

func TestSlimKeepsOnlyTheRecord(t *testing.T) {
	o, err := slim(wireNode())
	if err != nil {
		t.Fatal(err)
	}
	u := o.(*unstructured.Unstructured)
	if _, has := u.Object["status"]; has {
		t.Error("slim kept the status")
	}
	if _, has := u.GetAnnotations()["node.alpha.kubernetes.io/ttl"]; has {
		t.Error("slim kept an annotation that is not Weft's")
	}
	if u.GetLabels() != nil {
		t.Errorf("slim kept labels %v", u.GetLabels())
	}
	if _, has, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "taints"); has {
		t.Error("slim kept spec.taints")
	}
	n, err := nodeFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "wtg-n1" || n.UID != "1234" || n.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", n)
	}
	rec, ok, err := record(n)
	if err != nil || !ok {
		t.Fatalf("record: %v, %v", ok, err)
	}
	if rec.Subnet != netip.MustParsePrefix("10.244.7.0/24") || rec.UnderlayIP.String() != "192.0.2.7" ||
		rec.VTEPMAC != "02:00:00:00:00:07" || rec.Backend != "vxlan" || rec.ProbePort != 8473 {
		t.Errorf("record %+v", rec)
	}
}

func TestNodeFromReadsCreationAndSingleStackPodCIDR(t *testing.T) {
	u := wireNode()
	unstructured.RemoveNestedField(u.Object, "spec", "podCIDRs")
	n, err := nodeFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Created.UTC().Format("2006-01-02T15:04:05Z"); got != "2026-01-02T03:04:05Z" {
		t.Errorf("created %s", got)
	}
	sub, ok, err := podCIDR(n)
	if err != nil || !ok || sub.String() != "10.244.7.0/24" {
		t.Errorf("podCIDR from spec.podCIDR alone: %v %v %v", sub, ok, err)
	}
}

func TestNodeFromRefusesMistypedPodCIDRs(t *testing.T) {
	u := wireNode()
	u.Object["spec"].(map[string]any)["podCIDRs"] = "10.244.7.0/24" // a string, not a list
	if _, err := nodeFrom(u); err == nil || !strings.Contains(err.Error(), "spec.podCIDRs") {
		t.Fatalf("nodeFrom: %v", err)
	}
}

func TestClaimRoundTrip(t *testing.T) {
	c := claimFrom(newClaim("weft-subnet-10-244-3-0-24", "10.244.3.0/24", "wtg-n2"))
	if c.Name != "weft-subnet-10-244-3-0-24" || c.Holder != "wtg-n2" || c.Subnet != "10.244.3.0/24" {
		t.Fatalf("claim %+v", c)
	}
	sub := netip.MustParsePrefix("10.244.3.0/24")
	if staleClaim(c, sub, map[string]netip.Prefix{"wtg-n2": {}}) {
		t.Error("a claim whose holder has no podCIDR yet is not stale")
	}
	if !staleClaim(c, sub, map[string]netip.Prefix{}) {
		t.Error("a claim whose holder is gone is stale")
	}
	if !staleClaim(claim{Name: c.Name}, sub, map[string]netip.Prefix{"wtg-n2": {}}) {
		t.Error("a claim without a holder is stale")
	}
}

// The agent's memory goal rests on this package linking no typed
// clientset: it alone would add a Go type and a scheme registration for
// every API group, most of the agent's resident memory.
func TestLinksNoTypedClientset(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list this package's imports: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/weftnet/weft/internal/store/kubestore").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/client-go/kubernetes") || strings.HasPrefix(p, "k8s.io/client-go/informers") ||
			strings.HasPrefix(p, "k8s.io/api/") {
			t.Errorf("kubestore links %s", p)
		}
	}
}
