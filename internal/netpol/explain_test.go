package netpol

import (
	"net/netip"
	"reflect"
	"testing"
)

// `weft policy` tells an operator which policies select a pod and what
// they allow, in the API's own terms.
func TestExplainNamesThePoliciesThatSelectAPod(t *testing.T) {
	in := Input{
		Pods: []Pod{
			{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IP: netip.MustParseAddr("10.244.1.2"), Node: "n1"},
			{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}, IP: netip.MustParseAddr("10.244.2.2"), Node: "n2"},
			{Namespace: "x", Name: "h", Labels: map[string]string{"pod": "a"}, HostNetwork: true},
		},
		Policies: []Policy{
			{Namespace: "x", Name: "deny-all", IngressIsolates: true},
			{Namespace: "x", Name: "web", PodSelector: Selector{MatchLabels: map[string]string{"pod": "a"}}, IngressIsolates: true,
				Ingress: []Rule{
					{Peers: []Peer{{PodSelector: &Selector{MatchLabels: map[string]string{"pod": "b"}}}},
						Ports: []Port{{Protocol: TCP, Port: 80}, {Protocol: TCP, Name: "serve-81-tcp"}}},
					{Peers: []Peer{{NamespaceSelector: &Selector{MatchExpressions: []Requirement{{Key: "ns", Operator: "In", Values: []string{"y", "z"}}}}}}},
					{Peers: []Peer{{IPBlock: &IPBlock{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}}}},
						Ports: []Port{{Protocol: UDP, Port: 5000, EndPort: 5010}}},
				}},
			{Namespace: "x", Name: "egress", PodSelector: Selector{MatchLabels: map[string]string{"pod": "a"}}, EgressIsolates: true},
			{Namespace: "y", Name: "other-namespace", IngressIsolates: true},
			{Namespace: "x", Name: "only-b", PodSelector: Selector{MatchLabels: map[string]string{"pod": "b"}}, IngressIsolates: true},
		},
	}
	got, err := Explain(in, "x", "a")
	if err != nil {
		t.Fatal(err)
	}
	want := Explanation{Pod: "x/a", IP: netip.MustParseAddr("10.244.1.2"), Node: "n1", IsolatedIngress: true, IsolatedEgress: true,
		Policies: []Explained{
			{Policy: "x/deny-all", IsolatesIngress: true},
			{Policy: "x/egress", IsolatesEgress: true},
			{Policy: "x/web", IsolatesIngress: true, Ingress: []string{
				"from pods {pod=b} of namespace x on TCP 80, TCP port named serve-81-tcp",
				"from all pods of namespaces {ns in (y,z)} on every port",
				"from 10.0.0.0/8 except 10.244.3.0/24 on UDP 5000-5010",
			}},
		}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Explain(x/a):\n got  %+v\n want %+v", got, want)
	}
	// A host-network pod is never selected; an unknown pod is an error.
	if h, err := Explain(in, "x", "h"); err != nil || len(h.Policies) != 0 || h.IsolatedIngress {
		t.Errorf("host-network pod: %+v %v", h, err)
	}
	if _, err := Explain(in, "x", "nope"); err == nil {
		t.Error("an unknown pod was explained")
	}
}
