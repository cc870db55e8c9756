// Package store defines the one small interface that every datastore
// implements: the Kubernetes API in a cluster, etcd outside one. It owns
// the shape of a subnet lease; the node record it carries is
// cluster.Node. It knows nothing about the kernel.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/cluster"
)

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

// ErrCredentials is returned by AcquireLease when the credentials the
// agent was given are not its node's: the datastore would let it act as
// another node. The operator must give the node its own.
var ErrCredentials = errors.New("datastore credentials do not belong to this node")

// The kinds of Conflict.
const (
	ConflictSubnet  = "subnet"
	ConflictAddress = "address"
)

// Conflict is another node's bid for what this node holds in the
// datastore: its subnet or its underlay address. Peers decide who holds
// what by rules the bidder cannot bend (see the datastore), but a bid is
// a sign of stolen credentials or a misconfigured node, and the node
// under attack says so.
type Conflict struct {
	// Kind is ConflictSubnet or ConflictAddress.
	Kind string `json:"kind"`
	// Node is the other node; What the subnet or address it bids for.
	Node   string `json:"node"`
	What   string `json:"what"`
	Detail string `json:"detail"`
}

// ConflictReporter is a Store in which one node's credentials can bid for
// what another node holds (etcd; in Kubernetes the API server assigns
// podCIDRs). Conflicts is what the last snapshot Watch delivered shows
// against the nodes this store leased for; the agent reads it after each
// snapshot.
type ConflictReporter interface {
	Conflicts() []Conflict
}

// Store is a datastore as the agent sees it.
type Store interface {
	// AcquireLease returns the node's subnet: the one it already holds (a
	// restarted agent gets its own lease back), else prefer when it is
	// valid and free (the subnet the node's running pods already use, from
	// its node state, after its lease lapsed), else a free one. Datastores
	// where the subnet is not Weft's to choose (Kubernetes' podCIDR)
	// ignore prefer.
	AcquireLease(ctx context.Context, node string, prefer netip.Prefix) (Lease, error)
	// RenewLease extends the lease before it lapses.
	RenewLease(ctx context.Context, l Lease) (Lease, error)
	// Publish writes the node's own record; it is idempotent.
	Publish(ctx context.Context, n cluster.Node) error
	// Watch calls fn with the complete set of node records, once at the
	// start and again after every change, until ctx ends. It reconnects
	// and resyncs by itself after datastore errors; fn is never called
	// concurrently with itself. The full set, rather than events, lets the
	// caller compute desired state and diff it against the kernel, so a
	// missed delete cannot leave anything stale behind.
	Watch(ctx context.Context, fn func([]cluster.Node)) error
	// Remove deletes the node's record and releases its lease.
	Remove(ctx context.Context, node string) error
	// Err is the last datastore error, or nil when the last call worked.
	Err() error
	// LastContact is when the datastore last answered a call; zero
	// before it ever has. `weft status` shows it while the datastore is
	// unreachable, to say for how long.
	LastContact() time.Time
	Close() error
}
