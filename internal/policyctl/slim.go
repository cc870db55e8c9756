package policyctl

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Slim is the informers' transform: it keeps of each object only what
// the controller reads (netpol's decoders) and what the informer itself
// needs (name, namespace, resource version), so that the agent's memory
// grows with the number of pods by a few hundred bytes each, not by the
// whole Pod (spec, status, managed fields: several KiB).
func Slim(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	u.SetManagedFields(nil)
	u.SetAnnotations(nil)
	if u.GetKind() != "Pod" && u.GetKind() != "" {
		return u, nil
	}
	// New maps, not deletions: a Go map keeps its size when keys go.
	o := u.Object
	slim := pick(o, "apiVersion", "kind")
	if m, ok := o["metadata"].(map[string]any); ok {
		slim["metadata"] = pick(m, "name", "namespace", "labels", "resourceVersion", "uid", "deletionTimestamp")
	}
	if spec, ok := o["spec"].(map[string]any); ok {
		ss := pick(spec, "nodeName", "hostNetwork")
		for _, key := range []string{"containers", "initContainers"} {
			cs, _ := spec[key].([]any)
			var kept []any
			for _, c := range cs {
				if cm, ok := c.(map[string]any); ok {
					kept = append(kept, pick(cm, "name", "ports"))
				}
			}
			if kept != nil {
				ss[key] = kept
			}
		}
		slim["spec"] = ss
	}
	if st, ok := o["status"].(map[string]any); ok {
		slim["status"] = pick(st, "phase", "podIP", "podIPs")
	}
	u.Object = slim
	return u, nil
}

// pick copies the given keys of m (those it has) into a new map.
func pick(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}
