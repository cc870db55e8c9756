// Package netpoltest makes synthetic clusters for benchmarks of the
// NetworkPolicy compiler and its nftables applier.
package netpoltest

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/netpol"
)

// Scale describes a synthetic cluster: Pods pods in Namespaces namespaces,
// Policies policies spread evenly over the namespaces, and Local of the
// pods on node "n1" (whose pod subnet is 10.244.0.0/16 here, so that any
// number fits).
type Scale struct {
	Pods, Namespaces, Policies, Local int
}

// Cluster builds the input. Every pod has labels app (one of 10 per
// namespace), role (client or server) and a named port http (80, or 8080
// on every third pod); namespaces carry team (one of 5). Each policy
// selects one app of its namespace and mixes every rule shape: a pod
// selector, a namespace AND pod selector, an ipBlock with except, a
// numbered, a named and a ranged port, and egress with a named port.
func (s Scale) Cluster() netpol.Input {
	in := netpol.Input{Node: "n1", NodeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
	for n := range s.Namespaces {
		in.Namespaces = append(in.Namespaces, netpol.Namespace{Name: fmt.Sprintf("ns%d", n),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", n%5)}})
	}
	for i := range s.Pods {
		in.Pods = append(in.Pods, s.Pod(i, fmt.Sprintf("app%d", i%10)))
	}
	for i := range s.Policies {
		in.Policies = append(in.Policies, s.Policy(i, 80))
	}
	return in
}

// PodIP is pod i's address: pods 0..Local-1 are n1's (10.244.0.0/16),
// the others are on other nodes (10.245.0.0/16 and up).
func (s Scale) PodIP(i int) netip.Addr {
	base := byte(244)
	j := i
	if i >= s.Local {
		base, j = 245, i-s.Local
	}
	return netip.AddrFrom4([4]byte{10, base + byte(j/65000), byte(j % 65000 / 250), byte(j%250 + 1)})
}

// Pod is pod i with the given app label.
func (s Scale) Pod(i int, app string) netpol.Pod {
	node := "n1"
	if i >= s.Local {
		node = "other"
	}
	port := uint16(80)
	if i%3 == 0 {
		port = 8080
	}
	role := "server"
	if i%2 == 0 {
		role = "client"
	}
	return netpol.Pod{Namespace: fmt.Sprintf("ns%d", i%s.Namespaces), Name: fmt.Sprintf("p%d", i),
		IP: s.PodIP(i), Node: node, Labels: map[string]string{"app": app, "role": role},
		Ports: []netpol.NamedPort{{Name: "http", Protocol: netpol.TCP, Port: port}}}
}

// Policy is policy i, allowing TCP port on its numbered-port rule.
func (s Scale) Policy(i int, port uint16) netpol.Policy {
	ns := fmt.Sprintf("ns%d", i%s.Namespaces)
	sel := func(kv ...string) *netpol.Selector {
		m := map[string]string{}
		for j := 0; j+1 < len(kv); j += 2 {
			m[kv[j]] = kv[j+1]
		}
		return &netpol.Selector{MatchLabels: m}
	}
	return netpol.Policy{Namespace: ns, Name: fmt.Sprintf("pol%d", i),
		PodSelector:     *sel("app", fmt.Sprintf("app%d", (i/s.Namespaces)%10)),
		IngressIsolates: true, EgressIsolates: i%2 == 0,
		Ingress: []netpol.Rule{
			{Peers: []netpol.Peer{{PodSelector: sel("role", "client")}},
				Ports: []netpol.Port{{Protocol: netpol.TCP, Port: port}, {Protocol: netpol.TCP, Name: "http"}}},
			{Peers: []netpol.Peer{{NamespaceSelector: sel("team", fmt.Sprintf("t%d", i%5)), PodSelector: sel("app", fmt.Sprintf("app%d", i%10))}},
				Ports: []netpol.Port{{Protocol: netpol.TCP, Port: 8000, EndPort: 8100}}},
			{Peers: []netpol.Peer{{IPBlock: &netpol.IPBlock{CIDR: netip.MustParsePrefix("10.0.0.0/8"),
				Except: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.245.0.0/16")}}}}},
		},
		Egress: []netpol.Rule{
			{Ports: []netpol.Port{{Protocol: netpol.UDP, Port: 53}}},
			{Peers: []netpol.Peer{{NamespaceSelector: sel("team", fmt.Sprintf("t%d", (i+1)%5))}},
				Ports: []netpol.Port{{Protocol: netpol.TCP, Name: "http"}}},
		},
	}
}
