package netpol

import (
	"fmt"
	"net/netip"
)

// State is the desired policy state of one node, in the shapes nftables
// holds: named sets shared by every chain that needs them, one verdict
// chain per distinct rule list, and two verdict maps from a local pod's
// address to its chain. A packet then costs one map lookup per direction
// and the few rules of its pod's chain, whatever the number of policies
// and pods in the cluster.
type State struct {
	// NodeCIDRs are the node's pod subnets: only traffic from or to them
	// is judged here (the other end's node judges its own pods).
	NodeCIDRs []netip.Prefix
	// Guarded is true while any NetworkPolicy exists in the cluster: a
	// local address in NodeCIDRs that is not in Known is then dropped both
	// ways, so that a pod started after the last compile is unreachable
	// until its own verdicts are in place (no window at pod start).
	Guarded bool
	// Known are the local pod addresses this State has verdicts for.
	Known []netip.Addr

	AddrSets  map[string][]netip.Addr // pod addresses of a pod peer
	CIDRSets  map[string][]AddrRange  // an ipBlock less its excepts
	TupleSets map[string][]Tuple      // address . protocol . port of named ports
	PortSets  map[string][]PortRange  // port numbers and ranges

	Chains  map[string]*Chain
	Ingress map[netip.Addr]string // isolated local pod → its ingress chain
	Egress  map[netip.Addr]string // isolated local pod → its egress chain
}

// Direction of a chain.
type Direction uint8

const (
	In  Direction = iota // peers are sources
	Out                  // peers are destinations
)

// Chain is a verdict chain: a packet of a connection that any rule
// allows passes; anything else is dropped and counted against Policies.
type Chain struct {
	Dir      Direction
	Policies []string // namespace/name of the policies that isolate its pods
	Rules    []VRule
}

// PeerKind says which set a rule's peer address is looked up in.
type PeerKind uint8

const (
	AnyPeer   PeerKind = iota // every address
	AddrPeer                  // AddrSets[Set]
	CIDRPeer                  // CIDRSets[Set]
	TuplePeer                 // TupleSets[Set]: address, protocol and port at once
)

// VRule allows one peer on one protocol and port set. Proto 0 means every
// protocol (and then Ports is empty); Ports "" means every port.
type VRule struct {
	Kind  PeerKind
	Set   string
	Proto uint8
	Ports string
}

// Key is the rule's canonical text: rules are compared, sorted and tagged
// in nftables by it.
func (r VRule) Key() string {
	return fmt.Sprintf("%d:%s:%d:%s", r.Kind, r.Set, r.Proto, r.Ports)
}

// AddrRange is an inclusive IPv4 range.
type AddrRange struct{ First, Last netip.Addr }

// PortRange is an inclusive port range.
type PortRange struct{ First, Last uint16 }

// Tuple is a destination address with a protocol and port.
type Tuple struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
}
