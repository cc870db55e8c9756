package kubestore

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The store speaks to the API server through the dynamic client and reads
// the few fields it needs out of unstructured objects. The typed clientset
// would link a Go type and a scheme registration for every API group
// Kubernetes has, which costs the agent far more memory than all of its
// own work; Weft reads two kinds of object, and a handful of fields of each.

var (
	nodesResource  = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	leasesResource = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
)

// nodeObj is what Weft reads of a Node.
type nodeObj struct {
	Name            string
	UID             types.UID
	ResourceVersion string
	Created         time.Time
	Annotations     map[string]string
	PodCIDR         string
	PodCIDRs        []string
}

// nodeFrom reads a Node. Its spec fields are checked for type: a Node is
// written by kubelet and the controller-manager, but the store must not
// panic or guess on one it cannot read.
func nodeFrom(u *unstructured.Unstructured) (nodeObj, error) {
	n := nodeObj{
		Name:            u.GetName(),
		UID:             u.GetUID(),
		ResourceVersion: u.GetResourceVersion(),
		Created:         u.GetCreationTimestamp().Time,
		Annotations:     u.GetAnnotations(),
	}
	var err error
	if n.PodCIDR, _, err = unstructured.NestedString(u.Object, "spec", "podCIDR"); err != nil {
		return n, fmt.Errorf("node %s: spec.podCIDR: %w", n.Name, err)
	}
	if n.PodCIDRs, _, err = unstructured.NestedStringSlice(u.Object, "spec", "podCIDRs"); err != nil {
		return n, fmt.Errorf("node %s: spec.podCIDRs: %w", n.Name, err)
	}
	return n, nil
}

// slim keeps only what a peer record is made of: a Node's status (images,
// conditions, heartbeats) is most of its size and none of Weft's business.
// The informer keeps the slim copy; anything that is not a Node (the
// informer also hands its transform tombstones) passes as it is.
func slim(o any) (any, error) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return o, nil
	}
	meta := map[string]any{
		"name":            u.GetName(),
		"uid":             string(u.GetUID()),
		"resourceVersion": u.GetResourceVersion(),
	}
	ann := map[string]any{}
	for k, v := range u.GetAnnotations() {
		if strings.HasPrefix(k, AnnotationPrefix) {
			ann[k] = v
		}
	}
	if len(ann) > 0 {
		meta["annotations"] = ann
	}
	spec := map[string]any{}
	if s, ok := u.Object["spec"].(map[string]any); ok {
		for _, k := range []string{"podCIDR", "podCIDRs"} {
			if v, ok := s[k]; ok {
				spec[k] = v
			}
		}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata":   meta,
		"spec":       spec,
	}}, nil
}

// claim is what Weft reads of one of its subnet claims (a coordination
// Lease; see allocate.go).
type claim struct {
	Name string
	UID  types.UID
	// Holder is the Node holding the claim, empty when there is none.
	Holder string
	// Subnet is the claimed subnet as written in the claim's annotation.
	Subnet string
}

func claimFrom(u *unstructured.Unstructured) claim {
	holder, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
	return claim{Name: u.GetName(), UID: u.GetUID(), Holder: holder, Subnet: u.GetAnnotations()[claimLabel]}
}

// newClaim is the Lease that claims subnet for holder.
func newClaim(name, subnet, holder string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "coordination.k8s.io/v1",
		"kind":       "Lease",
		"metadata": map[string]any{
			"name":        name,
			"labels":      map[string]any{claimLabel: "true", "app.kubernetes.io/managed-by": "weft"},
			"annotations": map[string]any{claimLabel: subnet},
		},
		"spec": map[string]any{"holderIdentity": holder},
	}}
}
