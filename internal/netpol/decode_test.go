package netpol

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func obj(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodePolicyRefusesWhatTheAPIRefuses(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{`{"podSelector":{"matchExpressions":[{"key":"a","operator":"Near"}]}}`, "unknown operator"},
		{`{"podSelector":{"matchExpressions":[{"key":"a","operator":"In"}]}}`, "needs values"},
		{`{"podSelector":{},"policyTypes":["Sideways"]}`, "unknown policyType"},
		{`{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}}]}]}`, "cannot be combined"},
		{`{"podSelector":{},"ingress":[{"from":[{}]}]}`, "needs a podSelector"},
		{`{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"ten"}}]}]}`, "cidr"},
		{`{"podSelector":{},"ingress":[{"ports":[{"protocol":"ICMP"}]}]}`, "unknown protocol"},
		{`{"podSelector":{},"ingress":[{"ports":[{"port":70000}]}]}`, "out of range"},
		{`{"podSelector":{},"ingress":[{"ports":[{"port":"web","endPort":90}]}]}`, "needs a numbered port"},
		{`{"podSelector":{},"ingress":[{"ports":[{"port":90,"endPort":80}]}]}`, "below port"},
	} {
		_, err := DecodePolicy(obj(t, `{"metadata":{"namespace":"x","name":"p"},"spec":`+tc.spec+`}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x/p") {
			t.Errorf("%s: got error %v, want one naming x/p and saying %q", tc.spec, err, tc.want)
		}
	}
}

func TestDecodePolicyDefaultsAndShapes(t *testing.T) {
	p, err := DecodePolicy(obj(t, `{"metadata":{"namespace":"x","name":"p"},"spec":{
		"podSelector":{"matchLabels":{"app":"db"}},
		"ingress":[{"from":[{"namespaceSelector":{}},{"ipBlock":{"cidr":"10.1.2.3/16","except":["10.1.9.0/24"]}}],
		            "ports":[{"port":5432},{"protocol":"UDP","port":"dns","endPort":null},{"port":8000,"endPort":8010}]}],
		"egress":[{}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.IngressIsolates || !p.EgressIsolates {
		t.Errorf("without policyTypes, a policy with egress rules isolates both ways: %+v", p)
	}
	if p.PodSelector.MatchLabels["app"] != "db" {
		t.Errorf("podSelector: %+v", p.PodSelector)
	}
	r := p.Ingress[0]
	if r.Peers[0].NamespaceSelector == nil || r.Peers[0].PodSelector != nil {
		t.Errorf("namespaceSelector-only peer: %+v", r.Peers[0])
	}
	if b := r.Peers[1].IPBlock; b == nil || b.CIDR != netip.MustParsePrefix("10.1.0.0/16") || len(b.Except) != 1 {
		t.Errorf("ipBlock: %+v", b)
	}
	want := []Port{{Protocol: TCP, Port: 5432}, {Protocol: UDP, Name: "dns"}, {Protocol: TCP, Port: 8000, EndPort: 8010}}
	for i, w := range want {
		if r.Ports[i] != w {
			t.Errorf("port %d: got %+v, want %+v", i, r.Ports[i], w)
		}
	}
	if len(p.Egress) != 1 || len(p.Egress[0].Peers) != 0 || len(p.Egress[0].Ports) != 0 {
		t.Errorf("an empty egress rule allows everything: %+v", p.Egress)
	}
	q, err := DecodePolicy(obj(t, `{"metadata":{"namespace":"x","name":"q"},"spec":{"podSelector":{}}}`))
	if err != nil || !q.IngressIsolates || q.EgressIsolates {
		t.Errorf("a bare policy isolates ingress only: %+v %v", q, err)
	}
}

func TestDecodePod(t *testing.T) {
	p, ok, err := DecodePod(obj(t, `{"metadata":{"namespace":"x","name":"a","labels":{"pod":"a"}},
		"spec":{"nodeName":"n1","containers":[{"ports":[{"name":"web","containerPort":8080},
			{"name":"dns","containerPort":53,"protocol":"UDP"},{"containerPort":9000}]}]},
		"status":{"phase":"Running","podIP":"10.244.1.5"}}`))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if p.Node != "n1" || p.IP != netip.MustParseAddr("10.244.1.5") || p.Labels["pod"] != "a" {
		t.Errorf("pod: %+v", p)
	}
	want := []NamedPort{{"web", TCP, 8080}, {"dns", UDP, 53}}
	if len(p.Ports) != 2 || p.Ports[0] != want[0] || p.Ports[1] != want[1] {
		t.Errorf("named ports (unnamed ones are not): %+v", p.Ports)
	}
	if _, ok, _ := DecodePod(obj(t, `{"metadata":{"name":"done"},"status":{"phase":"Succeeded","podIP":"10.244.1.5"}}`)); ok {
		t.Error("a finished pod's address may be reused: it must not count")
	}
	if _, _, err := DecodePod(obj(t, `{"metadata":{"name":"bad"},"status":{"podIP":"10.244.1"}}`)); err == nil {
		t.Error("a malformed podIP must be an error")
	}
	ns := DecodeNamespace(obj(t, `{"metadata":{"name":"x","labels":{"team":"blue"}}}`))
	if ns.Name != "x" || ns.Labels["team"] != "blue" {
		t.Errorf("namespace: %+v", ns)
	}
}
