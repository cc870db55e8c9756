package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
)

// checkDatapath compares the kernel with the datapath's own plan for the
// peers the agent reports. The agent's API gives each peer's underlay
// address, subnet and chosen path; a peer reached over VXLAN has the VTEP
// MAC that the datapath derives from its underlay address. A difference
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
	dp, err := datapath.New(datapath.Config{Node: st.Node, Backend: st.Backend, Subnet: st.Subnet, UnderlayIP: st.UnderlayIP})
	if err != nil {
		return fail(err.Error())
	}
	defer dp.Close()
	drift, err := dp.Check(storeNodes(peers))
	if err != nil {
		return fail(err.Error())
	}
	if !drift.Clean() {
		select {
		case <-ctx.Done():
		case <-time.After(settle):
		}
		if again, err := reread(ctx); err == nil {
			if second, err := dp.Check(storeNodes(again)); err == nil {
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
			out = append(out, Finding{Check: "datapath", Peer: peerOf(e, peers), Result: Fail,
				Detail: e.String(), Fix: fix[kind]})
		}
	}
	sortFindings(out)
	return out
}

// peerOf names the peer an entry is for, when one is.
func peerOf(e datapath.Entry, peers []agentapi.Peer) string {
	for _, p := range peers {
		switch {
		case e.Kind == datapath.KindRoute && e.Key == p.Subnet.String(),
			e.Kind == datapath.KindNeighbour && e.Key == datapath.VTEPAddr(p.Subnet).String(),
			e.Kind == datapath.KindFDB && strings.EqualFold(e.Key, datapath.VTEPMAC(p.UnderlayIP).String()):
			return p.Name
		}
	}
	return ""
}

// settle is how long doctor waits before looking at a difference again.
const settle = time.Second

func storeNodes(peers []agentapi.Peer) []cluster.Node {
	nodes := make([]cluster.Node, 0, len(peers))
	for _, p := range peers {
		n := cluster.Node{Name: p.Name, UnderlayIP: p.UnderlayIP, Subnet: p.Subnet}
		if p.Path == datapath.PathVXLAN {
			n.VTEPMAC = datapath.VTEPMAC(p.UnderlayIP).String()
		}
		nodes = append(nodes, n)
	}
	return nodes
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
