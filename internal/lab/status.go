package lab

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/weftnet/weft/internal/lab/process"
)

// PrintStatus writes the lab's nodes (subnet, agent alive and ready) and
// pods. It asks each agent's /readyz from inside the node's namespace.
func (l *Lab) PrintStatus(ctx context.Context, w io.Writer) {
	s := l.State
	ds := "stopped"
	if process.Alive(s.Datastore.PID) {
		ds = fmt.Sprintf("running (pid %d)", s.Datastore.PID)
	}
	fmt.Fprintf(w, "lab %s: backend %s, %d segment(s), cluster CIDR %s (/%d per node)\n", s.Name, s.Backend, s.Segments, s.ClusterCIDR, s.SubnetLen)
	fmt.Fprintf(w, "datastore %s at %s in namespace %s: %s\n", s.Datastore.Kind, s.Datastore.Endpoint, s.Underlay, ds)
	if s.PodSyncPID != 0 {
		sync := "stopped"
		if process.Alive(s.PodSyncPID) {
			sync = fmt.Sprintf("running (pid %d)", s.PodSyncPID)
		}
		fmt.Fprintf(w, "pods from Pod objects (pod sync, log %s): %s\n", s.podSyncLog(), sync)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAMESPACE\tSEGMENT\tUNDERLAY\tSUBNET\tAGENT\tREADY\tPODS")
	for _, n := range s.Nodes {
		agent, ready := "dead", "no"
		if process.Alive(n.AgentPID) {
			agent = fmt.Sprintf("pid %d", n.AgentPID)
			if ok, err := l.AgentReady(ctx, n.Name); err != nil {
				ready = "no answer"
			} else if ok {
				ready = "yes"
			}
		}
		subnet := "-"
		if p, err := l.NodeSubnet(n.Name); err == nil {
			subnet = p.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.Netns, n.Segment, n.UnderlayIP, subnet, agent, ready, len(n.Pods))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNAMESPACE\tIP")
	for _, p := range s.Pods() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, p.Netns, p.IP)
	}
	tw.Flush()
}
