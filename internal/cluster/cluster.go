// Package cluster is the vocabulary that every part of the agent shares:
// what a node publishes about itself (its record), the backends a node can
// run, the MTU rules that follow from them, and how the cluster CIDR
// divides into the nodes' subnets (subnets.go). The datastores store
// records, the datapath programs them, the agent's API and doctor report
// them; none of them redefines these.
//
// It knows nothing about the kernel or any datastore: everything here is
// a value and pure arithmetic.
package cluster

import (
	"net/netip"
)

// Node is what one node publishes about itself: everything a peer needs to
// send traffic to the pods behind it.
type Node struct {
	Name string `json:"name"`
	// UnderlayIP is the node's own address on the network between nodes.
	UnderlayIP netip.Addr `json:"underlayIP"`
	// Subnet is the node's pod subnet (its lease).
	Subnet netip.Prefix `json:"subnet"`
	// VTEPMAC is the MAC address of the node's VXLAN device, empty when the
	// node runs no VXLAN device.
	VTEPMAC string `json:"vtepMAC,omitempty"`
	// Backend is what the node was configured with.
	Backend Backend `json:"backend"`
	// ProbePort is the UDP port on which the node's agent answers probes
	// from other agents, over the pod network, at its bridge address.
	ProbePort int `json:"probePort,omitempty"`
	// Version of the agent that published the record.
	Version string `json:"version,omitempty"`
	// NotHeld is set by the store that read the record, never published:
	// it says why the datastore does not show this node holding Subnet
	// (in etcd: another node holds it, or the node claims none; or the
	// same for UnderlayIP). A node can publish anything but hold only its
	// own, so the datapath gives such a record no path. Empty when the
	// datastore agrees.
	NotHeld string `json:"-"`
}
