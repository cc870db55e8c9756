package netpoltest

import (
	"fmt"
	"strconv"

	"github.com/weftnet/weft/internal/netpol"
)

// Objects returns the synthetic cluster as the API server would list it
// (the unstructured content an informer keeps): Namespaces, Pods shaped
// like a kubelet-run pod of one container, and NetworkPolicies. Decoding
// them gives Cluster's input.
func (s Scale) Objects() (namespaces, pods, policies []map[string]any) {
	in := s.Cluster()
	for _, ns := range in.Namespaces {
		namespaces = append(namespaces, NamespaceObject(ns))
	}
	for i, p := range in.Pods {
		pods = append(pods, PodObject(p, i))
	}
	for _, p := range in.Policies {
		policies = append(policies, PolicyObject(p))
	}
	return namespaces, pods, policies
}

// NamespaceObject is ns as a Namespace object.
func NamespaceObject(ns netpol.Namespace) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": ns.Name, "labels": labelsObj(ns.Labels),
			"uid": uid("ns", ns.Name), "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
		"spec":   map[string]any{"finalizers": []any{"kubernetes"}},
		"status": map[string]any{"phase": "Active"}}
}

func uid(kind, name string) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", len(kind), hashString(name))
}

func hashString(s string) uint64 {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h & 0xffffffffffff
}

func labelsObj(l map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range l {
		out[k] = v
	}
	return out
}

// PodObject is pod p as a kubelet-run Pod object (i makes its names
// unique).
func PodObject(p netpol.Pod, i int) map[string]any {
	var ports []any
	for _, np := range p.Ports {
		ports = append(ports, map[string]any{"name": np.Name, "containerPort": int64(np.Port), "protocol": protoName(np.Protocol)})
	}
	cond := func(t string) map[string]any {
		return map[string]any{"type": t, "status": "True", "lastProbeTime": nil, "lastTransitionTime": "2026-01-01T00:00:00Z"}
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "labels": labelsObj(p.Labels),
			"uid": uid("pod", p.Namespace+"/"+p.Name), "resourceVersion": strconv.Itoa(1000 + i),
			"creationTimestamp": "2026-01-01T00:00:00Z", "generateName": p.Name[:len(p.Name)/2] + "-",
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": p.Namespace + "-rs",
				"uid": uid("rs", p.Namespace), "controller": true, "blockOwnerDeletion": true}}},
		"spec": map[string]any{"nodeName": p.Node, "restartPolicy": "Always", "schedulerName": "default-scheduler",
			"serviceAccountName": "default", "terminationGracePeriodSeconds": int64(30), "dnsPolicy": "ClusterFirst",
			"containers": []any{map[string]any{"name": "app", "image": "registry.example/app:1.0", "ports": ports,
				"imagePullPolicy": "IfNotPresent",
				"env":             []any{map[string]any{"name": "MODE", "value": "serve"}},
				"resources":       map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}},
				"volumeMounts": []any{map[string]any{"name": "kube-api-access", "readOnly": true,
					"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}}}},
			"volumes": []any{map[string]any{"name": "kube-api-access", "projected": map[string]any{"defaultMode": int64(420)}}},
			"tolerations": []any{
				map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": int64(300)},
				map[string]any{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": int64(300)}}},
		"status": map[string]any{"phase": "Running", "podIP": p.IP.String(), "podIPs": []any{map[string]any{"ip": p.IP.String()}},
			"hostIP": "172.30.0.10", "startTime": "2026-01-01T00:00:01Z", "qosClass": "Burstable",
			"conditions": []any{cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")},
			"containerStatuses": []any{map[string]any{"name": "app", "ready": true, "restartCount": int64(0),
				"image": "registry.example/app:1.0", "imageID": "registry.example/app@sha256:0",
				"containerID": "containerd://" + uid("c", p.Name), "started": true,
				"state": map[string]any{"running": map[string]any{"startedAt": "2026-01-01T00:00:02Z"}}}}}}
}

// PolicyObject is p as a NetworkPolicy object, its policyTypes spelled
// out.
func PolicyObject(p netpol.Policy) map[string]any {
	var types []any
	if p.IngressIsolates {
		types = append(types, "Ingress")
	}
	if p.EgressIsolates {
		types = append(types, "Egress")
	}
	spec := map[string]any{"podSelector": selectorObj(&p.PodSelector), "policyTypes": types}
	rules := func(rs []netpol.Rule, peersKey string) []any {
		var out []any
		for _, r := range rs {
			m := map[string]any{}
			var peers, ports []any
			for _, pe := range r.Peers {
				pm := map[string]any{}
				if pe.IPBlock != nil {
					var except []any
					for _, e := range pe.IPBlock.Except {
						except = append(except, e.String())
					}
					pm["ipBlock"] = map[string]any{"cidr": pe.IPBlock.CIDR.String(), "except": except}
				}
				if pe.PodSelector != nil {
					pm["podSelector"] = selectorObj(pe.PodSelector)
				}
				if pe.NamespaceSelector != nil {
					pm["namespaceSelector"] = selectorObj(pe.NamespaceSelector)
				}
				peers = append(peers, pm)
			}
			for _, pt := range r.Ports {
				pm := map[string]any{"protocol": protoName(pt.Protocol)}
				switch {
				case pt.Name != "":
					pm["port"] = pt.Name
				case pt.Port != 0:
					pm["port"] = int64(pt.Port)
				}
				if pt.EndPort != 0 {
					pm["endPort"] = int64(pt.EndPort)
				}
				ports = append(ports, pm)
			}
			if peers != nil {
				m[peersKey] = peers
			}
			if ports != nil {
				m["ports"] = ports
			}
			out = append(out, m)
		}
		return out
	}
	if in := rules(p.Ingress, "from"); in != nil {
		spec["ingress"] = in
	}
	if eg := rules(p.Egress, "to"); eg != nil {
		spec["egress"] = eg
	}
	return map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": uid("np", p.ID()),
			"resourceVersion": "1", "generation": int64(1), "creationTimestamp": "2026-01-01T00:00:00Z"},
		"spec": spec}
}

func selectorObj(s *netpol.Selector) map[string]any {
	m := map[string]any{}
	if len(s.MatchLabels) > 0 {
		m["matchLabels"] = labelsObj(s.MatchLabels)
	}
	var exprs []any
	for _, r := range s.MatchExpressions {
		var vals []any
		for _, v := range r.Values {
			vals = append(vals, v)
		}
		exprs = append(exprs, map[string]any{"key": r.Key, "operator": r.Operator, "values": vals})
	}
	if exprs != nil {
		m["matchExpressions"] = exprs
	}
	return m
}

func protoName(p uint8) string {
	switch p {
	case netpol.UDP:
		return "UDP"
	case netpol.SCTP:
		return "SCTP"
	}
	return "TCP"
}
