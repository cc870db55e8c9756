package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/testkit/fakepeers"
)

// The fake peers (package fakepeers) live in the upper half of the
// benchmark's cluster CIDR, away from the leases real nodes get.
var (
	scaleCIDR    = fakepeers.ClusterCIDR
	fakeUnderlay = fakepeers.Underlay
	fakeSubnets  = fakepeers.Subnets
)

// writePeers plants the fake peers as an admin's tool would (the lab's
// client acts as etcd's root): each one's record and claims, as its agent
// would leave them, under the lab agents' prefix. Transactions hold at
// most etcd's default limit of 128 operations.
func writePeers(ctx context.Context, cli *clientv3.Client, n int) error {
	return inTxns(ctx, cli, n, func(i int) ([]clientv3.Op, error) {
		return etcdstore.PlantOps(etcdstore.DefaultPrefix, fakepeers.Node(i))
	})
}

func deletePeers(ctx context.Context, cli *clientv3.Client, n int) error {
	return inTxns(ctx, cli, n, func(i int) ([]clientv3.Op, error) {
		return etcdstore.RemoveOps(etcdstore.DefaultPrefix, fakepeers.Node(i).Name), nil
	})
}

// inTxns commits the operations of peers 0..n-1, as few transactions as
// etcd's limit allows.
func inTxns(ctx context.Context, cli *clientv3.Client, n int, ops func(i int) ([]clientv3.Op, error)) error {
	const maxOps = 128
	var batch []clientv3.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := cli.Txn(ctx).Then(batch...).Commit()
		batch = batch[:0]
		return err
	}
	for i := 0; i < n; i++ {
		o, err := ops(i)
		if err != nil {
			return err
		}
		if len(batch)+len(o) > maxOps {
			if err := flush(); err != nil {
				return fmt.Errorf("write peer records: %w", err)
			}
		}
		batch = append(batch, o...)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("write peer records: %w", err)
	}
	return nil
}

// programmed counts, in a node's namespace, the fake peers for which the
// agent has programmed all three of route, neighbour and FDB entry (the
// smallest of the three counts).
func programmed(nsName string) (int, error) {
	var routes, neighs, fdb int
	err := ns.WithNetNSPath(netns.Path(nsName), func(ns.NetNS) error {
		dev, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return nil // not made yet
		}
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: dev.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Dst != nil && contains(fakeSubnets, r.Dst.IP) {
				routes++
			}
		}
		ne, err := netlink.NeighList(dev.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range ne {
			if contains(fakeSubnets, n.IP) {
				neighs++
			}
		}
		fd, err := netlink.NeighList(dev.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, n := range fd {
			if n.IP != nil && contains(fakeUnderlay, n.IP) {
				fdb++
			}
		}
		return nil
	})
	return min(routes, neighs, fdb), err
}

func contains(p netip.Prefix, ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip.To4())
	return ok && p.Contains(a)
}

// waitProgrammed polls until want fake peers are programmed in nsName and
// returns when that was seen.
func waitProgrammed(ctx context.Context, nsName string, want int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		n, err := programmed(nsName)
		if err != nil {
			return time.Time{}, err
		}
		if n == want {
			return time.Now(), nil
		}
		last = n
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: %d of %d peers programmed after %s", nsName, last, want, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// rssKB is a process's resident set size in KiB.
func rssKB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// Scale measures one agent programming peers fake peers (VXLAN: a route,
// a neighbour and an FDB entry each), round by round: "watch", the
// records written while the agent runs, timed from the first write to the
// last entry programmed; and "cold start", a new node's agent started with
// the records already there, timed from its start. It prints the agent's
// RSS with no peers and with all of them.
func Scale(ctx context.Context, o Options, peers int) error {
	cfg := o.labConfig(cluster.BackendVXLAN, 1, 0)
	cfg.ClusterCIDR = scaleCIDR
	if peers < 1 || peers > fakepeers.Max {
		return fmt.Errorf("peers %d: want 1 to 2048 (the fake peers' subnet range holds 2048 /24s)", peers)
	}
	return withLab(ctx, cfg, func(l *lab.Lab) error {
		cli, err := l.EtcdClient()
		if err != nil {
			return err
		}
		defer cli.Close()
		n1 := l.Nodes[0]
		rss0, err := rssKB(n1.AgentPID)
		if err != nil {
			return err
		}
		var write, watch, cold []time.Duration
		var rssWatch, rssCold []float64
		for round := 0; round < o.Rounds; round++ {
			start := time.Now()
			if err := writePeers(ctx, cli, peers); err != nil {
				return err
			}
			write = append(write, time.Since(start))
			done, err := waitProgrammed(ctx, n1.Netns, peers, 60*time.Second)
			if err != nil {
				return err
			}
			watch = append(watch, done.Sub(start))
			r, err := rssKB(n1.AgentPID)
			if err != nil {
				return err
			}
			rssWatch = append(rssWatch, float64(r))

			n, err := l.NewNode(0)
			if err != nil {
				return err
			}
			start = time.Now()
			if err := l.StartAgent(n.Name); err != nil {
				return err
			}
			done, err = waitProgrammed(ctx, n.Netns, peers, 60*time.Second)
			if err != nil {
				return err
			}
			cold = append(cold, done.Sub(start))
			r, err = rssKB(n.AgentPID)
			if err != nil {
				return err
			}
			rssCold = append(rssCold, float64(r))
			fmt.Fprintf(o.Log, "round %d: written in %s, programmed by the running agent in %s, by a starting agent in %s; RSS %d / %d KiB\n",
				round+1, write[round].Round(time.Millisecond), watch[round].Round(time.Millisecond), cold[round].Round(time.Millisecond), int(rssWatch[round]), r)

			if err := l.RemoveNode(ctx, n.Name); err != nil {
				return err
			}
			if err := deletePeers(ctx, cli, peers); err != nil {
				return err
			}
			if _, err := waitProgrammed(ctx, n1.Netns, 0, 60*time.Second); err != nil {
				return err
			}
		}
		w := o.Out
		fmt.Fprintf(w, "scale: %d peers (VXLAN: route + neighbour + FDB entry each), %d rounds, median (min–max)\n", peers, o.Rounds)
		lo, hi := minMax(write)
		fmt.Fprintf(w, "  records written to etcd           %6.0f ms (%.0f–%.0f)\n", ms(median(write)), ms(lo), ms(hi))
		lo, hi = minMax(watch)
		fmt.Fprintf(w, "  running agent: written → programmed %6.0f ms (%.0f–%.0f)\n", ms(median(watch)), ms(lo), ms(hi))
		lo, hi = minMax(cold)
		fmt.Fprintf(w, "  cold start: agent start → programmed %5.0f ms (%.0f–%.0f)\n", ms(median(cold)), ms(lo), ms(hi))
		fmt.Fprintf(w, "  agent RSS: %.1f MiB with no peer, %.1f MiB with %d (running agent), %.1f MiB (cold-started agent); running agent with/without peers %.2f\n",
			float64(rss0)/1024, median(rssWatch)/1024, peers, median(rssCold)/1024, median(rssWatch)/float64(rss0))
		return nil
	})
}
