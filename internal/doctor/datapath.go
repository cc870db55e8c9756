package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/datapath"
)

// checkDatapath compares the kernel with the entries that the agent's own
// decisions need: its API gives each peer's underlay address, subnet,
// path, the VTEP MAC it programmed and the interface its route leaves by,
// and the datapath turns exactly those into routes, neighbours and FDB
// entries, deciding nothing again. A difference
// is looked at again a moment later with the agent's peers read anew, and
// only what is still there is reported: the agent may have been applying
// a change just then.
func checkDatapath(ctx context.Context, st agentapi.Status, peers []agentapi.Peer, reread func(context.Context) ([]agentapi.Peer, error)) []Finding {
	fail := func(detail string) []Finding {
		return []Finding{{Check: "datapath", Result: Warn, Detail: "not compared: " + detail,
			Fix: "run doctor in the node's network namespace, where the agent runs"}}
	}
	if !st.UnderlayIP.IsValid() {
		return fail("the agent does not report its underlay address (an older agent?)")
	}
	dp, err := datapath.New(datapath.Config{Node: st.Node, Backend: st.Backend, Subnet: st.Subnet, UnderlayIP: st.UnderlayIP,
		ClusterCIDR: st.ClusterCIDR})
	if err != nil {
		return fail(err.Error())
	}
	defer dp.Close()
	drift, err := dp.Check(decisions(peers))
	if err != nil {
		return fail(err.Error())
	}
	if !drift.Clean() {
		select {
		case <-ctx.Done():
		case <-time.After(settle):
		}
		if again, err := reread(ctx); err == nil {
			if second, err := dp.Check(decisions(again)); err == nil {
				drift, peers = persistent(drift, second), again
			}
		}
	}
	if drift.Clean() {
		return []Finding{{Check: "datapath", Result: OK,
			Detail: fmt.Sprintf("routes, neighbours and FDB entries are exactly what the %d peer(s) need", len(peers))}}
	}
	fix := map[string]string{
		"missing": "the agent adds it at its next resync (--resync, 30s by default); if it stays missing, `weft status` shows the reconcile error",
		"stale":   "the agent removes Weft's entries that no peer needs at its next resync; if it stays, the agent is not reconciling (see `weft status`), or the entry came from another Weft install: `ip route del` / `bridge fdb del` it",
		"wrong":   "the agent replaces it at its next resync; if it comes back wrong, something else on the node (another network agent, a script) writes it",
	}
	var out []Finding
	for kind, es := range map[string][]datapath.Entry{"missing": drift.Missing, "stale": drift.Stale, "wrong": drift.Wrong} {
		for _, e := range es {
			out = append(out, Finding{Check: "datapath", Peer: e.Peer, Result: Fail,
				Detail: e.String(), Fix: fix[kind]})
		}
	}
	sortFindings(out)
	return out
}

// settle is how long doctor waits before looking at a difference again.
const settle = time.Second

// decisions are the agent's paths as the datapath takes them.
func decisions(peers []agentapi.Peer) []datapath.PeerPath {
	out := make([]datapath.PeerPath, 0, len(peers))
	for _, p := range peers {
		out = append(out, datapath.PeerPath{Name: p.Name, UnderlayIP: p.UnderlayIP, Subnet: p.Subnet,
			Path: p.Path, Reason: p.PathReason, Refused: p.Refused, VTEPMAC: p.VTEPMAC, Device: p.Device})
	}
	return out
}

// persistent keeps the entries of b that a also had.
func persistent(a, b datapath.Drift) datapath.Drift {
	keep := func(x, y []datapath.Entry) []datapath.Entry {
		seen := map[string]bool{}
		for _, e := range x {
			seen[e.String()] = true
		}
		var out []datapath.Entry
		for _, e := range y {
			if seen[e.String()] {
				out = append(out, e)
			}
		}
		return out
	}
	b.Missing, b.Stale, b.Wrong = keep(a.Missing, b.Missing), keep(a.Stale, b.Stale), keep(a.Wrong, b.Wrong)
	return b
}
