package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/weftnet/weft/internal/agentapi"
)

func init() {
	register("peers", "the other nodes: path to each (direct or VXLAN) and why, reachability and RTT", runPeers)
}

func runPeers(args []string) error {
	return readAgent("peers", args, (*agentapi.Client).Peers, printPeers)
}

func printPeers(w io.Writer, ps []agentapi.Peer) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no peers: this is the only node the agent knows of")
		return
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUNDERLAY\tSUBNET\tPATH\tWHY\tSTATE\tRTT\tSINCE")
	down, unreachable := 0, 0
	for _, p := range ps {
		state, rtt := p.State, "-"
		switch {
		case p.Down:
			down++
			state = "DOWN"
		case p.State == agentapi.Unreachable:
			unreachable++
			state = "UNREACHABLE"
		}
		if p.State == agentapi.Reachable {
			rtt = fmt.Sprintf("%.2fms", p.RTTMillis)
		}
		since := "-"
		if !p.Since.IsZero() {
			since = ago(p.Since)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.UnderlayIP, p.Subnet, p.Path, p.PathReason, state, rtt, since)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d peer(s)", len(ps))
	if unreachable > 0 {
		fmt.Fprintf(w, ", %d unreachable", unreachable)
	}
	if down > 0 {
		fmt.Fprintf(w, ", %d DOWN (unreachable for longer than the threshold)", down)
	}
	fmt.Fprintln(w)
	for _, p := range ps {
		if (p.Down || p.State == agentapi.Unreachable) && p.LastError != "" {
			fmt.Fprintf(w, "  %s: %s\n", p.Name, p.LastError)
		}
	}
}
