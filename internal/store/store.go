// Package store defines what Weft keeps in its datastore, and the one small
// interface that every datastore implements: the Kubernetes API in a
// cluster, etcd outside one. It owns the shape of a node's record and of a
// subnet lease; it knows nothing about the kernel.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Backends a node can ask for. "auto" picks, per peer, a direct route when
// the peer shares this node's L2 segment and VXLAN otherwise.
const (
	BackendAuto   = "auto"
	BackendHostGW = "host-gw"
	BackendVXLAN  = "vxlan"
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
	Backend string `json:"backend"`
	// ProbePort is the UDP port on which the node's agent answers probes
	// from other agents, over the pod network, at its bridge address.
	ProbePort int `json:"probePort,omitempty"`
	// Version of the agent that published the record.
	Version string `json:"version,omitempty"`
}

// Lease is a node's hold on its pod subnet.
type Lease struct {
	Node   string       `json:"node"`
	Subnet netip.Prefix `json:"subnet"`
	// Expires is when the lease lapses unless renewed; zero when the
	// datastore does not expire leases (Kubernetes' podCIDR does not).
	Expires time.Time `json:"expires"`
}

// ErrCIDRExhausted is returned when no free subnet is left in the cluster
// CIDR. The operator must grow the cluster CIDR or shrink the subnets.
var ErrCIDRExhausted = errors.New("no free subnet left in the cluster CIDR")

// ErrLeaseLost is returned by RenewLease when the lease lapsed and another
// node holds the subnet now.
var ErrLeaseLost = errors.New("subnet lease lost to another node")

// Store is a datastore as the agent sees it.
type Store interface {
	// AcquireLease returns the node's subnet: the one it already holds (a
	// restarted agent gets its own lease back) or else a free one.
	AcquireLease(ctx context.Context, node string) (Lease, error)
	// RenewLease extends the lease before it lapses.
	RenewLease(ctx context.Context, l Lease) (Lease, error)
	// Publish writes the node's own record; it is idempotent.
	Publish(ctx context.Context, n Node) error
	// Watch calls fn with the complete set of node records, once at the
	// start and again after every change, until ctx ends. It reconnects
	// and resyncs by itself after datastore errors; fn is never called
	// concurrently with itself. The full set, rather than events, lets the
	// caller compute desired state and diff it against the kernel, so a
	// missed delete cannot leave anything stale behind.
	Watch(ctx context.Context, fn func([]Node)) error
	// Remove deletes the node's record and releases its lease.
	Remove(ctx context.Context, node string) error
	// Err is the last datastore error, or nil when the last call worked.
	Err() error
	Close() error
}
