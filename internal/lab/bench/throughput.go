package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
)

// Throughput measures iperf3 TCP throughput, interleaved round by round:
// in a VXLAN lab and a host-gw lab, node to node over the underlay and pod
// to pod across the same two nodes, and in the VXLAN lab two pods on one
// node. Each pod figure is printed as a ratio of its lab's underlay figure.
func Throughput(ctx context.Context, o Options, dur time.Duration) error {
	vcfg := o.labConfig(cluster.BackendVXLAN, 2, 2)
	hcfg := o.labConfig(cluster.BackendHostGW, 2, 1)
	return withLab(ctx, vcfg, func(vx *lab.Lab) error {
		return withLab(ctx, hcfg, func(hg *lab.Lab) error {
			vn1, vn2 := vx.Nodes[0], vx.Nodes[1]
			hn1, hn2 := hg.Nodes[0], hg.Nodes[1]
			runs := []struct {
				name         string
				l            *lab.Lab
				fromNS, toNS string
				dst          lab.PodState
			}{
				{"vxlan lab: node → node (underlay)", vx, vn1.Netns, vn2.Netns, lab.PodState{IP: vn2.UnderlayIP}},
				{"vxlan lab: pod → pod across nodes", vx, vn1.Pods[0].Netns, vn2.Pods[0].Netns, *vn2.Pods[0]},
				{"vxlan lab: pod → pod on one node", vx, vn1.Pods[0].Netns, vn1.Pods[1].Netns, *vn1.Pods[1]},
				{"host-gw lab: node → node (underlay)", hg, hn1.Netns, hn2.Netns, lab.PodState{IP: hn2.UnderlayIP}},
				{"host-gw lab: pod → pod across nodes", hg, hn1.Pods[0].Netns, hn2.Pods[0].Netns, *hn2.Pods[0]},
			}
			got := make([][]float64, len(runs))
			for round := 0; round < o.Rounds; round++ {
				// Every other round runs the paths in reverse order: on a
				// shared machine the load drifts within a round too, and
				// no path should always be measured first or last. A lab's
				// runs stay together, beside its underlay run.
				for j := range runs {
					i := j
					if round%2 == 1 {
						i = len(runs) - 1 - j
					}
					r := runs[i]
					bps, err := r.l.Throughput(ctx, r.fromNS, r.toNS, r.dst.IP, dur)
					if err != nil {
						return fmt.Errorf("%s: %w", r.name, err)
					}
					got[i] = append(got[i], bps)
					fmt.Fprintf(o.Log, "round %d: %-38s %7.2f Gbit/s\n", round+1, r.name, bps/1e9)
				}
			}
			// Each pod figure is compared with its lab's underlay figure of
			// the same round, and the ratios' median is reported: the
			// machine's load drifts between rounds, less within one.
			underIdx := map[*lab.Lab]int{vx: 0, hg: 3}
			w := o.Out
			fmt.Fprintf(w, "throughput: iperf3 TCP, %d interleaved rounds of %s; median (min–max); ratio: median of the rounds' pod/underlay\n", o.Rounds, dur)
			for i, r := range runs {
				lo, hi := minMax(got[i])
				ratio := ""
				if u := underIdx[r.l]; u != i {
					var rs []float64
					for k := range got[i] {
						rs = append(rs, got[i][k]/got[u][k])
					}
					rlo, rhi := minMax(rs)
					ratio = fmt.Sprintf("  = %.2f of underlay (%.2f–%.2f)", median(rs), rlo, rhi)
				}
				fmt.Fprintf(w, "  %-38s %6.2f Gbit/s (%.2f–%.2f)%s\n", r.name, median(got[i])/1e9, lo/1e9, hi/1e9, ratio)
			}
			return nil
		})
	})
}
