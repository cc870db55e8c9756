package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
)

// Join measures, in a VXLAN lab and a host-gw lab alternately, the time
// from a new node's agent starting to the first echo reply from a pod on
// that node, seen from a pod on an existing node. The new node's
// namespace and underlay link exist before the clock starts (the machine
// is booted); in the measured time the agent leases a subnet, writes the
// CNI configuration, the pod is attached through the plugin, and both
// nodes program their routes to each other. The node leaves again between
// rounds.
func Join(ctx context.Context, o Options) error {
	vcfg := o.labConfig(cluster.BackendVXLAN, 1, 1)
	hcfg := o.labConfig(cluster.BackendHostGW, 1, 1)
	return withLab(ctx, vcfg, func(vx *lab.Lab) error {
		return withLab(ctx, hcfg, func(hg *lab.Lab) error {
			labs := []*lab.Lab{vx, hg}
			got := make([][]time.Duration, len(labs))
			for round := 0; round < o.Rounds; round++ {
				for i, l := range labs {
					d, p, err := joinOnce(ctx, l)
					if err != nil {
						return fmt.Errorf("%s lab: %w", l.Backend, err)
					}
					got[i] = append(got[i], d)
					fmt.Fprintf(o.Log, "round %d: %-8s join %s (configured %s, pod attached %s, first reply %s)\n",
						round+1, l.Backend, d.Round(time.Millisecond), p[0].Round(time.Millisecond), p[1].Round(time.Millisecond), p[2].Round(time.Millisecond))
				}
			}
			fmt.Fprintf(o.Out, "join: agent start → first reply from a pod on the new node, %d interleaved rounds, median (min–max)\n", o.Rounds)
			for i, l := range labs {
				lo, hi := minMax(got[i])
				fmt.Fprintf(o.Out, "  %-8s %6.0f ms (%.0f–%.0f)\n", l.Backend, ms(median(got[i])), ms(lo), ms(hi))
			}
			fmt.Fprintf(o.Out, "  vxlan/host-gw ratio %.2f\n", float64(median(got[0]))/float64(median(got[1])))
			return nil
		})
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// joinOnce adds a node, times its join, and removes it. The parts are the
// times (from agent start) at which the node was configured, the pod
// attached and the first reply seen.
func joinOnce(ctx context.Context, l *lab.Lab) (_ time.Duration, parts [3]time.Duration, err error) {
	src := l.Nodes[0].Pods[0]
	n, err := l.NewNode(0)
	if err != nil {
		return 0, parts, err
	}
	defer func() {
		if rerr := l.RemoveNode(ctx, n.Name); rerr != nil && err == nil {
			err = fmt.Errorf("remove node %s: %w", n.Name, rerr)
		}
	}()
	start := time.Now()
	if err := l.StartAgent(n.Name); err != nil {
		return 0, parts, err
	}
	if err := l.WaitNodeConfigured(ctx, n.Name, 30*time.Second); err != nil {
		return 0, parts, err
	}
	parts[0] = time.Since(start)
	pod, err := l.AddPod(ctx, n.Name)
	if err != nil {
		return 0, parts, err
	}
	parts[1] = time.Since(start)
	deadline := start.Add(30 * time.Second)
	for {
		r, err := lab.Ping(ctx, src.Netns, pod.IP, 1, time.Millisecond, 10*time.Millisecond)
		if err != nil {
			return 0, parts, err
		}
		if r.Received == 1 {
			parts[2] = time.Since(start)
			return parts[2], parts, nil
		}
		if time.Now().After(deadline) {
			return 0, parts, fmt.Errorf("no reply from %s on new node %s within 30s", pod.IP, n.Name)
		}
	}
}
