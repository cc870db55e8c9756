package netpol

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Explanation is what NetworkPolicy says about one pod, for people: the
// policies that select it and what each allows, in the words of the
// API (`weft policy NAMESPACE/POD`).
type Explanation struct {
	Pod  string     `json:"pod"` // namespace/name
	IP   netip.Addr `json:"ip,omitzero"`
	Node string     `json:"node,omitempty"`
	// IsolatedIngress/IsolatedEgress: some policy selects the pod for
	// that direction, so only the policies' rules let traffic through.
	IsolatedIngress bool        `json:"isolatedIngress"`
	IsolatedEgress  bool        `json:"isolatedEgress"`
	Policies        []Explained `json:"policies"`
}

// Explained is one policy that selects the pod.
type Explained struct {
	Policy string `json:"policy"` // namespace/name
	// Ingress and Egress hold one line per rule; a direction the policy
	// isolates with no rule allows nothing that way.
	IsolatesIngress bool     `json:"isolatesIngress"`
	IsolatesEgress  bool     `json:"isolatesEgress"`
	Ingress         []string `json:"ingress,omitempty"`
	Egress          []string `json:"egress,omitempty"`
}

// Explain says which policies of in select the pod namespace/name and
// what they allow. A pod in.Pods does not hold is an error.
func Explain(in Input, namespace, name string) (Explanation, error) {
	var pod *Pod
	for i := range in.Pods {
		if in.Pods[i].Namespace == namespace && in.Pods[i].Name == name {
			pod = &in.Pods[i]
		}
	}
	if pod == nil {
		return Explanation{}, fmt.Errorf("no pod %s/%s in the cluster", namespace, name)
	}
	ex := Explanation{Pod: namespace + "/" + name, IP: pod.IP, Node: pod.Node, Policies: []Explained{}}
	if pod.HostNetwork {
		return ex, nil // NetworkPolicy does not apply to host-network pods
	}
	for i := range in.Policies {
		p := &in.Policies[i]
		if p.Namespace != namespace || !p.PodSelector.Matches(pod.Labels) {
			continue
		}
		e := Explained{Policy: p.ID(), IsolatesIngress: p.IngressIsolates, IsolatesEgress: p.EgressIsolates}
		if p.IngressIsolates {
			ex.IsolatedIngress = true
			for _, r := range p.Ingress {
				e.Ingress = append(e.Ingress, describeRule(r, "from", p.Namespace))
			}
		}
		if p.EgressIsolates {
			ex.IsolatedEgress = true
			for _, r := range p.Egress {
				e.Egress = append(e.Egress, describeRule(r, "to", p.Namespace))
			}
		}
		ex.Policies = append(ex.Policies, e)
	}
	sort.Slice(ex.Policies, func(i, j int) bool { return ex.Policies[i].Policy < ex.Policies[j].Policy })
	return ex, nil
}

// describeRule renders one rule: "from <peers> on <ports>".
func describeRule(r Rule, dir, ns string) string {
	peers := "anywhere"
	if len(r.Peers) > 0 {
		var ps []string
		for _, pe := range r.Peers {
			ps = append(ps, describePeer(pe, ns))
		}
		peers = strings.Join(ps, " or ")
	}
	ports := "every port"
	if len(r.Ports) > 0 {
		var ps []string
		for _, pt := range r.Ports {
			ps = append(ps, describePort(pt))
		}
		ports = strings.Join(ps, ", ")
	}
	return dir + " " + peers + " on " + ports
}

func describePeer(pe Peer, ns string) string {
	if b := pe.IPBlock; b != nil {
		s := b.CIDR.String()
		if len(b.Except) > 0 {
			var ex []string
			for _, e := range b.Except {
				ex = append(ex, e.String())
			}
			s += " except " + strings.Join(ex, ", ")
		}
		return s
	}
	pods := "all pods"
	if pe.PodSelector != nil && !pe.PodSelector.empty() {
		pods = "pods " + pe.PodSelector.describe()
	}
	switch {
	case pe.NamespaceSelector == nil:
		return pods + " of namespace " + ns
	case pe.NamespaceSelector.empty():
		return pods + " of every namespace"
	default:
		return pods + " of namespaces " + pe.NamespaceSelector.describe()
	}
}

func describePort(pt Port) string {
	proto := map[uint8]string{TCP: "TCP", UDP: "UDP", SCTP: "SCTP"}[pt.Protocol]
	switch {
	case pt.Name != "":
		return proto + " port named " + pt.Name
	case pt.Port == 0:
		return "every " + proto + " port"
	case pt.EndPort != 0:
		return fmt.Sprintf("%s %d-%d", proto, pt.Port, pt.EndPort)
	default:
		return fmt.Sprintf("%s %d", proto, pt.Port)
	}
}

func (s *Selector) empty() bool { return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 }

// describe writes a selector as kubectl's -l does: "{app=web, tier in (a,b)}".
func (s *Selector) describe() string {
	var parts []string
	for _, k := range sortedKeys(s.MatchLabels) {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case "Exists":
			parts = append(parts, r.Key)
		case "DoesNotExist":
			parts = append(parts, "!"+r.Key)
		default:
			parts = append(parts, r.Key+" "+strings.ToLower(r.Operator)+" ("+strings.Join(r.Values, ",")+")")
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
