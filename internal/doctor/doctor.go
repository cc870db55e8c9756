// Package doctor examines one node's pod network the way an operator
// would, and says for each thing it finds what to do: whether every peer's
// pods are reachable over the pod network right now, whether full-size
// packets with Don't Fragment set get through (the MTU black hole), whether
// the kernel's routes, neighbours and FDB are what the agent's plan says,
// whether IPAM holds addresses that no pod uses any more, and whether the
// CNI plugin reports itself ready. It reads the agent through its local
// API and the kernel through netlink; it changes nothing on the node and
// sends nothing but a bounded number of probes to the peers' responders.
package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// Result of one check.
type Result string

const (
	OK   Result = "ok"
	Warn Result = "warn"
	Fail Result = "fail"
)

// Finding is one thing doctor looked at: what it saw and, unless it is
// OK, what to do about it.
type Finding struct {
	// Check names what was looked at ("reachability", "path MTU",
	// "datapath", "IPAM", "CNI STATUS", ...); Peer is set for checks of
	// one peer.
	Check  string `json:"check"`
	Peer   string `json:"peer,omitempty"`
	Result Result `json:"result"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is everything doctor found on one node.
type Report struct {
	Node     string          `json:"node,omitempty"`
	Subnet   netip.Prefix    `json:"subnet,omitzero"`
	Backend  cluster.Backend `json:"backend,omitempty"`
	MTU      int             `json:"mtu,omitempty"`
	Findings []Finding       `json:"findings"`
}

// Count returns how many findings have result r.
func (r Report) Count(res Result) int {
	n := 0
	for _, f := range r.Findings {
		if f.Result == res {
			n++
		}
	}
	return n
}

// Failed reports whether anything is wrong.
func (r Report) Failed() bool { return r.Count(Fail) > 0 }

// Options say where this node's agent and files are, and how hard to
// probe.
type Options struct {
	RunDir  string // the agent's API socket (names.RunDir)
	DataDir string // node state and IPAM leases (names.DataDir)
	ConfDir string // CNI network configs (names.CNIConfDir)
	BinDir  string // CNI plugins (names.CNIBinDir)
	// ProbePort is where the peers' agents answer probes.
	ProbePort uint16
	// Timeout is how long one probe waits for its answer (default 1s);
	// Tries is how many probes a check sends before it calls a peer or a
	// size lost (default 3).
	Timeout time.Duration
	Tries   int
	// LeakGrace is how old a lease without its pod must be before doctor
	// calls it leaked (default LeakGrace; negative: at once).
	LeakGrace time.Duration
}

// defaults fills what the caller left empty: first from the directories the
// running agent reports (so doctor looks where the agent and its plugin
// do), then from Weft's standard paths. RunDir is set already: it is how
// the agent was asked.
func (o *Options) defaults(agent names.Dirs) {
	d := names.Dirs{Data: o.DataDir, Run: o.RunDir, CNIConf: o.ConfDir, CNIBin: o.BinDir}.Or(agent).WithDefaults()
	o.DataDir, o.RunDir, o.ConfDir, o.BinDir = d.Data, d.Run, d.CNIConf, d.CNIBin
	if o.ProbePort == 0 {
		o.ProbePort = names.ProbePort
	}
	if o.LeakGrace == 0 {
		o.LeakGrace = LeakGrace
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Tries <= 0 {
		o.Tries = 3
	}
}

// Run examines the node whose network namespace the calling goroutine's
// thread is in. Its findings come in a fixed order: agent, bridge, each
// peer's reachability and path MTU, datapath, IPAM, CNI. Checks that need
// the agent are skipped (and say so) when it does not answer; the others
// run anyway.
func Run(ctx context.Context, o Options) Report {
	o.RunDir = names.Dirs{Run: o.RunDir}.WithDefaults().Run
	var rep Report
	add := func(fs ...Finding) { rep.Findings = append(rep.Findings, fs...) }

	client := agentapi.NewClient(o.RunDir)
	st, serr := client.Status(ctx)
	o.defaults(st.Dirs)
	var peers []agentapi.Peer
	if serr == nil {
		peers, serr = client.Peers(ctx)
	}
	if serr != nil {
		add(Finding{Check: "agent", Result: Fail, Detail: serr.Error(),
			Fix: "start the Weft agent on this node (kubectl -n kube-system get pods -l app.kubernetes.io/name=weft -o wide; its log says why it stopped); peers and datapath cannot be checked without it"})
	} else {
		rep.Node, rep.Subnet, rep.Backend, rep.MTU = st.Node, st.Subnet, st.Backend, st.MTU
		add(agentFinding(st))
	}

	// The node state is the plugin's view of the node: doctor falls back
	// to it when the agent does not answer.
	ns, nsErr := nodestate.Read(o.DataDir)
	subnet := st.Subnet
	if !subnet.IsValid() && nsErr == nil {
		subnet = ns.Subnet
		rep.Subnet, rep.Node = ns.Subnet, ns.Node
	}

	if serr == nil && st.Subnet.IsValid() {
		bf := bridgeFinding(st.Subnet)
		add(bf)
		if bf.Result == OK {
			add(checkPeers(ctx, o, st, peers)...)
		} else {
			add(Finding{Check: "peers", Result: Warn, Detail: "not probed: probes leave from the bridge's gateway, which is missing",
				Fix: "fix the bridge first"})
		}
		add(checkDatapath(ctx, st, peers, client.Peers)...)
	}
	add(checkIPAM(o, subnet, nsErr)...)
	add(checkCNI(ctx, o))
	return rep
}

func agentFinding(st agentapi.Status) Finding {
	f := Finding{Check: "agent", Result: OK,
		Detail: fmt.Sprintf("node %s, subnet %s, backend %s, pod MTU %d, %d peer(s)", st.Node, st.Subnet, st.Backend, st.MTU, st.Peers)}
	if !st.Subnet.IsValid() {
		f.Result, f.Detail = Fail, "the agent holds no subnet lease yet"
		f.Fix = "see `weft status` and the agent's log: it cannot lease a subnet (datastore unreachable, cluster CIDR exhausted or node without podCIDR)"
		return f
	}
	if len(st.Degraded) > 0 {
		f.Result = Warn
		f.Detail += fmt.Sprintf("; the agent reports %d problem(s): %v", len(st.Degraded), st.Degraded)
		f.Fix = "see `weft status` for each problem"
	}
	return f
}
