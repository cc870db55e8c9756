// Package netpol compiles Kubernetes NetworkPolicy (networking.k8s.io/v1)
// into the verdicts one node must enforce: which of its pods are isolated,
// for ingress and for egress, and what each isolated pod may exchange, as
// address sets, port sets and per-pod verdict chains (State). It is pure:
// it reads its Input and touches nothing. Package netpolnft turns a State
// into nftables; the agent feeds the Input from informers.
//
// The inputs are Weft's own small types, not k8s.io/api's: the agent reads
// unstructured objects (see Decode*), so that the typed API packages stay
// out of its binary (cmd/weft/deps_test.go).
package netpol

import "net/netip"

// Protocol numbers (IANA) of the transports a NetworkPolicy port names.
const (
	TCP  uint8 = 6
	UDP  uint8 = 17
	SCTP uint8 = 132
)

// Input is everything the compiler needs for one node.
type Input struct {
	// Node is the name of the node the verdicts are for; a pod is local
	// when its Node equals it.
	Node string
	// NodeCIDRs are the node's pod subnets: every local pod address lies
	// in one of them.
	NodeCIDRs  []netip.Prefix
	Pods       []Pod
	Namespaces []Namespace
	Policies   []Policy
}

// Pod is what policy needs of a pod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	IP              netip.Addr // invalid until the pod has one
	Node            string
	// HostNetwork pods share their node's address: NetworkPolicy neither
	// selects them nor can tell them apart as peers.
	HostNetwork bool
	Ports       []NamedPort // the containers' named ports
}

// NamedPort is one named containerPort.
type NamedPort struct {
	Name     string
	Protocol uint8
	Port     uint16
}

// Namespace carries the labels namespaceSelectors match.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Policy is one NetworkPolicy, already normalised: the implicit
// policyTypes of the API are spelled out in Ingress/Egress.
type Policy struct {
	Namespace, Name string
	PodSelector     Selector
	// IngressIsolates/EgressIsolates say whether the policy's types
	// include Ingress/Egress: a selected pod is then isolated in that
	// direction, and only the rules (of all policies) open it.
	IngressIsolates bool
	EgressIsolates  bool
	Ingress         []Rule // "from" rules
	Egress          []Rule // "to" rules
}

// ID is the policy's namespace/name.
func (p *Policy) ID() string { return p.Namespace + "/" + p.Name }

// Rule is one ingress or egress rule: traffic with any of the peers on any
// of the ports. No peers means every address; no ports means every port
// and protocol.
type Rule struct {
	Peers []Peer
	Ports []Port
}

// Peer is one entry of from/to: an ipBlock, or pods chosen by a pod
// selector and/or a namespace selector.
type Peer struct {
	// PodSelector nil with NamespaceSelector set means all pods of the
	// matching namespaces.
	PodSelector *Selector
	// NamespaceSelector nil means the policy's own namespace.
	NamespaceSelector *Selector
	IPBlock           *IPBlock
}

// IPBlock is a CIDR less some sub-CIDRs.
type IPBlock struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Port is one entry of ports. Port 0 with no Name means every port of
// Protocol; EndPort (0 = none) makes Port..EndPort a range.
type Port struct {
	Protocol uint8
	Port     uint16
	EndPort  uint16
	Name     string // a named containerPort, resolved on the destination pod
}

// Selector is a label selector; the zero Selector matches everything.
type Selector struct {
	MatchLabels      map[string]string
	MatchExpressions []Requirement
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string
	Operator string // In, NotIn, Exists, DoesNotExist
	Values   []string
}
