package agent

import (
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/store"
)

// Status is the agent's state as an operator sees it (weft status, the
// local API, metrics).
type Status struct {
	Node       string          `json:"node"`
	Lease      *store.Lease    `json:"lease,omitempty"`
	Backend    cluster.Backend `json:"backend"`
	MTU        int             `json:"mtu"`
	UnderlayIP netip.Addr      `json:"underlayIP"`
	// UnderlayLink is the interface holding the underlay address.
	UnderlayLink string `json:"underlayLink,omitempty"`
	VTEPMAC      string `json:"vtepMAC,omitempty"`
	// DatastoreError is the last datastore error, empty when it answers.
	DatastoreError string `json:"datastoreError,omitempty"`
	// DatastoreContact is when the datastore last answered.
	DatastoreContact time.Time `json:"datastoreContact,omitzero"`
	StartTime        time.Time `json:"startTime"`
	// Ready: lease held, node state written, first reconcile done.
	Ready                 bool          `json:"ready"`
	Reconciles            int           `json:"reconciles"`
	LastReconcile         time.Time     `json:"lastReconcile,omitempty"`
	LastReconcileDuration time.Duration `json:"lastReconcileDurationNs"`
	LastReconcileError    string        `json:"lastReconcileError,omitempty"`
	// LastSetupError is set while repairing the node's setup (bridge,
	// node state, nftables, CNI config) fails.
	LastSetupError string `json:"lastSetupError,omitempty"`
	// PolicyError says what keeps NetworkPolicy enforcement from being
	// whole (it stopped, an apply failed, same-node traffic bypasses it);
	// the last verdicts applied stay in the kernel.
	PolicyError string `json:"policyError,omitempty"`
	// Conflicts are other nodes' standing bids in the datastore for this
	// node's subnet or underlay address.
	Conflicts []store.Conflict `json:"conflicts,omitempty"`
	// Routes, Neighbours and FDB count what the datapath programs.
	Routes     int                 `json:"routes"`
	Neighbours int                 `json:"neighbours"`
	FDB        int                 `json:"fdb"`
	Peers      []datapath.PeerPath `json:"peers"`
}

// Status returns a copy of the agent's current state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	s := a.status
	if a.status.Lease != nil {
		l := *a.status.Lease
		s.Lease = &l
	}
	s.Peers = append([]datapath.PeerPath(nil), a.status.Peers...)
	s.Conflicts = append([]store.Conflict(nil), a.status.Conflicts...)
	a.mu.Unlock()
	if a.cfg.Store != nil {
		if err := a.cfg.Store.Err(); err != nil {
			s.DatastoreError = err.Error()
		}
		s.DatastoreContact = a.cfg.Store.LastContact()
	}
	return s
}

// update changes the status under the lock.
func (a *Agent) update(fn func(s *Status)) {
	a.mu.Lock()
	fn(&a.status)
	a.mu.Unlock()
}
