package policyctl

import (
	"encoding/json"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
)

// Slimming keeps everything policy reads: a pod decodes the same before
// and after, and what is left is a fraction of the object.
func TestSlimKeepsWhatPolicyReads(t *testing.T) {
	s := netpoltest.Scale{Pods: 30, Namespaces: 3, Policies: 6, Local: 10}
	_, pods, pols := s.Objects()
	for _, o := range append(pods, pols...) {
		full, _ := json.Marshal(o)
		var copied map[string]any
		_ = json.Unmarshal(full, &copied)
		u := &unstructured.Unstructured{Object: copied}
		u.SetAnnotations(map[string]string{"a": "b"})
		if _, err := Slim(u); err != nil {
			t.Fatal(err)
		}
		slim, _ := json.Marshal(u.Object)
		if u.GetKind() == "Pod" {
			before, _, err1 := netpol.DecodePod(o)
			after, _, err2 := netpol.DecodePod(u.Object)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(before, after) {
				t.Fatalf("pod decodes differently after Slim: %+v vs %+v (%v %v)", before, after, err1, err2)
			}
			if u.GetUID() == "" || u.GetResourceVersion() == "" {
				t.Error("Slim dropped the uid or resource version")
			}
			if len(slim)*3 > len(full) {
				t.Errorf("a slimmed pod is %d of %d bytes", len(slim), len(full))
			}
		} else {
			before, err1 := netpol.DecodePolicy(o)
			after, err2 := netpol.DecodePolicy(u.Object)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(before, after) {
				t.Fatal("policy decodes differently after Slim")
			}
		}
		if len(u.GetAnnotations()) != 0 {
			t.Error("annotations kept")
		}
	}
}
