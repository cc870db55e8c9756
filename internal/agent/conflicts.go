package agent

import (
	"github.com/weftnet/weft/internal/store"
)

// noteConflicts reads, after each snapshot, what other nodes bid for of
// this node's subnet and underlay address (datastores where one node's
// credentials can; see store.ConflictReporter). Peers do not follow such
// a bid, and the agent keeps its lease, but a bid means stolen
// credentials or a misconfigured node: each new one is logged as an error
// and counted, and the status is Degraded while any stands.
func (a *Agent) noteConflicts() {
	r, ok := a.cfg.Store.(store.ConflictReporter)
	if !ok {
		return
	}
	now := r.Conflicts()
	a.mu.Lock()
	before := a.status.Conflicts
	a.status.Conflicts = now
	a.mu.Unlock()

	had := conflictSet(before)
	for id, c := range conflictSet(now) {
		if had[id] != nil {
			delete(had, id)
			continue
		}
		a.log.Error("another node bids in the datastore for what this node holds; peers keep routing to this node, but that node's credentials may be stolen",
			"kind", c.Kind, "other_node", c.Node, "what", c.What, "detail", c.Detail)
		if m := a.cfg.Metrics; m != nil {
			m.DatastoreConflict(c.Kind)
		}
	}
	for _, c := range had {
		a.log.Info("a bid for what this node holds is gone", "kind", c.Kind, "other_node", c.Node, "what", c.What)
	}
}

// conflictSet indexes conflicts by what they are about: one other node
// bidding for one thing, however many keys it writes for it.
func conflictSet(cs []store.Conflict) map[string]*store.Conflict {
	m := map[string]*store.Conflict{}
	for i := range cs {
		id := cs[i].Kind + "\x00" + cs[i].Node + "\x00" + cs[i].What
		if m[id] == nil {
			m[id] = &cs[i]
		}
	}
	return m
}
