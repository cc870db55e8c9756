package netpol

import (
	"testing"
)

// Updates the upstream e2e suite exercises: a pod's labels, a namespace's
// labels and a policy's rules change, and the verdicts follow on the next
// compile.
func TestVerdictsFollowUpdates(t *testing.T) {
	fromY := policy("x", "a-from-y", `{"podSelector":{"matchLabels":{"pod":"a"}},
		"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}},"podSelector":{"matchLabels":{"role":"client"}}}]}]}`)
	in := cluster(fromY)
	if allowed(Compile(in), podIP("yb"), podIP("xa"), TCP, 80) {
		t.Fatal("y/b has no role=client yet")
	}
	for i := range in.Pods {
		if in.Pods[i].Namespace == "y" && in.Pods[i].Name == "b" {
			in.Pods[i].Labels = map[string]string{"pod": "b", "role": "client"}
		}
	}
	st := Compile(in)
	if !allowed(st, podIP("yb"), podIP("xa"), TCP, 80) || allowed(st, podIP("yc"), podIP("xa"), TCP, 80) {
		t.Error("a pod label update: y/b becomes a client, y/c does not")
	}
	// Namespace z takes y's label: its pods become peers, y's do not.
	for i := range in.Namespaces {
		switch in.Namespaces[i].Name {
		case "y":
			in.Namespaces[i].Labels = map[string]string{"ns": "old-y"}
		case "z":
			in.Namespaces[i].Labels = map[string]string{"ns": "y"}
		}
	}
	for i := range in.Pods {
		if in.Pods[i].Namespace == "z" && in.Pods[i].Name == "c" {
			in.Pods[i].Labels = map[string]string{"pod": "c", "role": "client"}
		}
	}
	st = Compile(in)
	if allowed(st, podIP("yb"), podIP("xa"), TCP, 80) || !allowed(st, podIP("zc"), podIP("xa"), TCP, 80) {
		t.Error("a namespace label update moves the peer set")
	}
	// The policy is replaced by one that selects pod b instead: a opens,
	// b closes.
	in2 := cluster(policy("x", "a-from-y", `{"podSelector":{"matchLabels":{"pod":"b"}}}`))
	st = Compile(in2)
	if !allowed(st, podIP("zc"), podIP("xa"), TCP, 80) || allowed(st, podIP("zc"), podIP("xb"), TCP, 80) {
		t.Error("a policy update moves the isolation from a to b")
	}
	// A named port of the wrong protocol does not resolve.
	st = Compile(cluster(policy("x", "udp-web", `{"podSelector":{"matchLabels":{"pod":"a"}},
		"ingress":[{"ports":[{"protocol":"UDP","port":"web"}]}]}`)))
	if allowed(st, podIP("xb"), podIP("xa"), UDP, 80) || allowed(st, podIP("xb"), podIP("xa"), TCP, 80) {
		t.Error("web is a TCP port: a UDP rule naming it allows nothing")
	}
	// A policy selects only pods of its own namespace.
	st = Compile(cluster(policy("y", "deny", `{"podSelector":{"matchLabels":{"pod":"a"}}}`)))
	if !allowed(st, podIP("xb"), podIP("xa"), TCP, 80) || allowed(st, podIP("xb"), podIP("ya"), TCP, 80) {
		t.Error("y's policy isolates y/a, not x/a")
	}
}
