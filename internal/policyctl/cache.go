// Package policyctl enforces Kubernetes NetworkPolicy on one node: it
// watches NetworkPolicies, Pods and Namespaces through the dynamic client
// (unstructured objects: the typed API stays out of the agent's binary),
// compiles them with package netpol and keeps the kernel's table in step
// with package netpolnft, and exports the drop counters as metrics. It
// owns nothing in the kernel itself.
package policyctl

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/netpol"
)

// cluster is the informers' view, decoded: what Compile needs, keyed by
// namespace/name. Objects that fail to decode are kept out and counted.
type cluster struct {
	mu         sync.Mutex
	pods       map[string]netpol.Pod
	namespaces map[string]netpol.Namespace
	policies   map[string]netpol.Policy
	// bad lists objects that could not be decoded, with why.
	bad map[string]string
	// uids are the pods' metadata.uid, so that an address hint meant for
	// a pod is never given to an earlier pod of the same name.
	uids map[string]string
	// hints are the addresses the CNI plugin reported at ADD for pods
	// whose status has none yet (see hints.go).
	hints map[string]hint
	now   func() time.Time
}

func newCluster() *cluster {
	return &cluster{pods: map[string]netpol.Pod{}, namespaces: map[string]netpol.Namespace{},
		policies: map[string]netpol.Policy{}, bad: map[string]string{},
		uids: map[string]string{}, hints: map[string]hint{}, now: time.Now}
}

func key(ns, name string) string { return ns + "/" + name }

// setPod records a pod (ok=false: it holds no address any more).
func (c *cluster) setPod(obj map[string]any) {
	p, ok, err := netpol.DecodePod(obj)
	meta, _ := obj["metadata"].(map[string]any)
	uid, _ := meta["uid"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	pk := key(p.Namespace, p.Name)
	k := "pod " + pk
	delete(c.bad, k)
	c.uids[pk] = uid
	switch {
	case err != nil:
		c.bad[k] = err.Error()
		delete(c.pods, pk)
		c.dropHint(pk, uid)
	case !ok:
		delete(c.pods, pk)
		c.dropHint(pk, uid) // it has ended: its address is gone
	default:
		c.pods[pk] = p
		if p.IP.IsValid() {
			c.dropHint(pk, uid) // the status wins
		}
	}
}

func (c *cluster) deletePod(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pk := key(ns, name)
	c.dropHint(pk, c.uids[pk])
	delete(c.pods, pk)
	delete(c.uids, pk)
	delete(c.bad, "pod "+pk)
}

func (c *cluster) setNamespace(obj map[string]any) {
	ns := netpol.DecodeNamespace(obj)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.namespaces[ns.Name] = ns
}

func (c *cluster) deleteNamespace(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.namespaces, name)
}

// setPolicy records a policy. A policy that cannot be decoded is dropped
// from the input: the API server validates policies, so this is a bug
// or a newer API; it is reported (Bad) rather than guessed at.
func (c *cluster) setPolicy(obj map[string]any) {
	p, err := netpol.DecodePolicy(obj)
	c.mu.Lock()
	defer c.mu.Unlock()
	k := "networkpolicy " + key(p.Namespace, p.Name)
	delete(c.bad, k)
	if err != nil {
		c.bad[k] = err.Error()
		delete(c.policies, key(p.Namespace, p.Name))
		return
	}
	c.policies[key(p.Namespace, p.Name)] = p
}

func (c *cluster) deletePolicy(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.policies, key(ns, name))
	delete(c.bad, "networkpolicy "+key(ns, name))
}

// input is the compiler's input for node. It is in the maps' order: the
// compiler's result does not depend on it, and sorting ten thousand pod
// keys would add about 2 ms to every change for nothing.
func (c *cluster) input(node string, cidrs []netip.Prefix) netpol.Input {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := netpol.Input{Node: node, NodeCIDRs: cidrs, Pods: make([]netpol.Pod, 0, len(c.pods)),
		Namespaces: make([]netpol.Namespace, 0, len(c.namespaces)), Policies: make([]netpol.Policy, 0, len(c.policies))}
	hinted := c.hintedAddrs(node, cidrs)
	for k, p := range c.pods {
		if a, ok := hinted[k]; ok {
			p.IP = a
		}
		in.Pods = append(in.Pods, p)
	}
	for _, ns := range c.namespaces {
		in.Namespaces = append(in.Namespaces, ns)
	}
	for _, p := range c.policies {
		in.Policies = append(in.Policies, p)
	}
	return in
}

// Bad returns the objects left out because they did not decode.
func (c *cluster) Bad() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.bad))
	for k, v := range c.bad {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
