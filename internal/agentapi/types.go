// Package agentapi is the agent's local API: HTTP over a unix socket in the
// run directory that only root can open, serving GET /status and GET
// /peers as JSON, and the client that `weft status`, `weft peers` and
// `weft doctor` use. It owns the JSON shapes the CLI renders and the
// Provider interface that answers them (package agentserve implements it
// from the agent's status and the probes); it knows nothing of how they
// are computed.
package agentapi

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netpol"
)

// Provider is what the agent implements to answer the API. Both calls must
// be cheap and safe to call from any goroutine: they read state the agent
// already holds, they do not probe or query the datastore.
type Provider interface {
	Status(ctx context.Context) (Status, error)
	Peers(ctx context.Context) ([]Peer, error)
	// Policy explains NetworkPolicy for the pod namespace/name; an agent
	// that does not enforce it answers ErrNoPolicy.
	Policy(ctx context.Context, namespace, name string) (netpol.Explanation, error)
}

// ErrNoPolicy is the answer of an agent that enforces no NetworkPolicy
// (the etcd datastore, or --network-policy=false).
var ErrNoPolicy = errors.New("this agent enforces no NetworkPolicy (it runs with the etcd datastore or --network-policy=false)")

// Status is this node's network in a few lines: `weft status`.
type Status struct {
	Node        string       `json:"node"`
	Subnet      netip.Prefix `json:"subnet"`
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	// Backend is the datapath mode: "host-gw", "vxlan" or "auto" (direct
	// routes on the same L2 segment, VXLAN elsewhere).
	Backend   cluster.Backend `json:"backend"`
	MTU       int             `json:"mtu"`
	Datastore Datastore       `json:"datastore"`
	// UnderlayIP is this node's address between nodes, which peers route
	// to and VXLAN packets leave from.
	UnderlayIP netip.Addr `json:"underlayIP,omitzero"`
	// Peers is the number of other nodes this agent programs; Unreachable
	// how many of them the probes have not reached for longer than the
	// threshold.
	Peers       int `json:"peers"`
	Unreachable int `json:"peersUnreachable"`
	// Refused is how many peer records the agent refused to program
	// (`weft peers` says which and why).
	Refused int `json:"peerRecordsRefused"`
	// Pods is the number of pod addresses in use on this node; used and
	// free count the subnet's allocatable addresses.
	Pods          int       `json:"pods"`
	AddressesUsed int       `json:"addressesUsed"`
	AddressesFree int       `json:"addressesFree"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"startedAt"`
	// UptimeSeconds is filled by the server from StartedAt.
	UptimeSeconds int64 `json:"uptimeSeconds"`
	// Degraded names everything that is not as it should be, one item per
	// problem, each saying what is wrong; empty when all is well.
	Degraded []string `json:"degraded"`
	// Dirs are the directories the agent runs with, so that tools on the
	// node (weft doctor) look where the agent and its plugin do.
	Dirs names.Dirs `json:"dirs"`
}

// Datastore is where the agent's leases live and whether it can reach it.
type Datastore struct {
	// Kind is "kubernetes" or "etcd".
	Kind     string `json:"kind"`
	Endpoint string `json:"endpoint,omitempty"`
	Healthy  bool   `json:"healthy"`
	// Error is the last error talking to the datastore, when unhealthy.
	Error string `json:"error,omitempty"`
	// LastContact is when the datastore last answered the agent; zero if
	// it never has.
	LastContact time.Time `json:"lastContact,omitzero"`
}

// Reachability of a peer's pods, as this agent's probes measured it.
const (
	Unknown     = "unknown"
	Reachable   = "reachable"
	Unreachable = "unreachable"
)

// Peer is one other node and how this node reaches its pods: `weft peers`.
type Peer struct {
	Name       string       `json:"name"`
	UnderlayIP netip.Addr   `json:"underlayIP"`
	Subnet     netip.Prefix `json:"subnet"`
	// Path is "direct" (a route via the peer's underlay address) or
	// "vxlan"; PathReason says why the agent chose it (for example "same
	// L2 segment" or "backend vxlan forced by config").
	Path       string `json:"path"`
	PathReason string `json:"pathReason"`
	// Refused is set when the agent refused the peer's record (why is in
	// PathReason): "outside-cluster", "not-lease-holder", "protected",
	// "conflict", "vtep-mac", "own-address" or "malformed".
	Refused string `json:"refused,omitempty"`
	// VTEPMAC is the MAC the agent programmed for the peer's VTEP (VXLAN
	// path), Device the interface the peer's route leaves by: what the
	// kernel must hold, as the agent decided it.
	VTEPMAC string `json:"vtepMAC,omitempty"`
	Device  string `json:"device,omitempty"`
	// State is Unknown, Reachable or Unreachable; Since is when it became
	// so; Down is set once the peer has been unreachable for longer than
	// the agent's threshold.
	State string    `json:"state"`
	Since time.Time `json:"since,omitempty"`
	Down  bool      `json:"down"`
	// RTTMillis is the last probe's round trip over the pod network.
	RTTMillis float64 `json:"rttMillis,omitempty"`
	// LastError is why the last probe failed, if it did.
	LastError string `json:"lastError,omitempty"`
}
