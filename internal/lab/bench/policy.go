package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
	"github.com/weftnet/weft/internal/netpolnft"
)

// PolicyScale is the cluster the policy benchmark loads: 1000 policies
// over 10,000 pods in 100 namespaces.
var PolicyScale = netpoltest.Scale{Pods: 10000, Namespaces: 100, Policies: 1000, Local: 110}

// policyCIDR keeps the lab's pod subnets apart from the synthetic
// cluster's (10.244.0.0/15).
var policyCIDR = netip.MustParsePrefix("10.250.0.0/16")

// Policy measures NetworkPolicy enforcement at scale, in a two-node lab:
//
//   - the engine (compile, then one nftables transaction), in a node's
//     namespace, as the agent runs it: everything from scratch, then one
//     policy change and one pod change, with 110 pods on the node (a
//     kubelet's default maximum) and with all 10,000 on it;
//   - the memory of a process that holds what the agent's policy
//     controller holds: the objects as its informers keep them, their
//     decoded form, the compiler's memory and the applied table's state
//     (MemoryCommand, run as a child);
//   - TCP throughput between a pod on each node with the whole load in
//     both nodes' tables (the two pods isolated both ways, allowed to each
//     other) as a ratio of the same pair with no table, interleaved.
func Policy(ctx context.Context, o Options, dur time.Duration, changes int) error {
	cfg := o.labConfig(cluster.BackendAuto, 2, 1)
	cfg.ClusterCIDR = policyCIDR
	return withLab(ctx, cfg, func(l *lab.Lab) error {
		n1, n2 := l.Nodes[0], l.Nodes[1]
		w := o.Out
		fmt.Fprintf(w, "policy: %d policies over %d pods in %d namespaces\n", PolicyScale.Policies, PolicyScale.Pods, PolicyScale.Namespaces)

		for _, local := range []int{110, 10000} {
			s := PolicyScale
			s.Local = local
			e, err := engine(n1.Netns, s, changes)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "  %5d pods on the node: full compile + apply %s; one policy change %s; one pod change %s (CPU, median of %d; wall in brackets)\n",
				local, e.full, e.policy, e.pod, changes)
		}

		mem, err := policyMemory(ctx, o, n1.Netns)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  memory of the policy controller's state: RSS %.1f MiB with everything loaded, %.1f MiB before (live Go heap %.1f MiB); first compile + apply from the objects %s\n",
			float64(mem.RSSKiB)/1024, float64(mem.BaseRSSKiB)/1024, float64(mem.HeapKiB)/1024, time.Duration(mem.ApplyNanos).Round(time.Millisecond))

		// Throughput: pod a on n1 streams to pod b on n2.
		a, b := n1.Pods[0], n2.Pods[0]
		tables := map[*lab.NodeState]*netpol.State{
			n1: loadedWith(n1, a.IP, b.IP, true),
			n2: loadedWith(n2, b.IP, a.IP, false),
		}
		var none, loaded, ratios []float64
		for round := 0; round < o.Rounds; round++ {
			for _, withTable := range []bool{round%2 == 1, round%2 == 0} {
				for n, st := range tables {
					if err := inNS(n.Netns, func() error {
						if _, err := netpolnft.Remove(); err != nil || !withTable {
							return err
						}
						_, err := (&netpolnft.Applier{}).Apply(st)
						return err
					}); err != nil {
						return err
					}
				}
				bps, err := l.Throughput(ctx, a.Netns, b.Netns, b.IP, dur)
				if err != nil {
					return fmt.Errorf("pod → pod (table loaded %v): %w", withTable, err)
				}
				if withTable {
					loaded = append(loaded, bps)
				} else {
					none = append(none, bps)
				}
				fmt.Fprintf(o.Log, "round %d: table loaded %-5v %7.2f Gbit/s\n", round+1, withTable, bps/1e9)
			}
			ratios = append(ratios, loaded[round]/none[round])
		}
		for n := range tables {
			if err := inNS(n.Netns, func() error { _, err := netpolnft.Remove(); return err }); err != nil {
				return err
			}
		}
		lo, hi := minMax(ratios)
		fmt.Fprintf(w, "  pod → pod across nodes, iperf3 TCP %s × %d: no table %.2f Gbit/s, loaded %.2f Gbit/s: ratio %.2f (%.2f–%.2f)\n",
			dur, o.Rounds, median(none)/1e9, median(loaded)/1e9, median(ratios), lo, hi)
		return nil
	})
}

// loadedWith is the synthetic cluster's State for node n, with the lab pod
// self on n and its peer on the other node added to namespace ns0 as app0
// (which policy 0 isolates both ways); two more policies let client
// stream to server on iperf3's port.
func loadedWith(n *lab.NodeState, self, peer netip.Addr, client bool) *netpol.State {
	in := PolicyScale.Cluster()
	in.NodeCIDRs = append(in.NodeCIDRs, n.Subnet)
	other := "lab-other"
	for name, ip := range map[string]netip.Addr{"self": self, "peer": peer} {
		node := other
		if name == "self" {
			node = in.Node
		}
		role := "server"
		if (name == "self") == client {
			role = "client"
		}
		in.Pods = append(in.Pods, netpol.Pod{Namespace: "ns0", Name: "bench-" + role, IP: ip, Node: node,
			Labels: map[string]string{"app": "app0", "bench": role}})
	}
	sel := func(role string) *netpol.Selector {
		return &netpol.Selector{MatchLabels: map[string]string{"bench": role}}
	}
	port := []netpol.Port{{Protocol: netpol.TCP, Port: 5201}}
	in.Policies = append(in.Policies,
		netpol.Policy{Namespace: "ns0", Name: "bench-in", PodSelector: *sel("server"), IngressIsolates: true,
			Ingress: []netpol.Rule{{Peers: []netpol.Peer{{PodSelector: sel("client")}}, Ports: port}}},
		netpol.Policy{Namespace: "ns0", Name: "bench-out", PodSelector: *sel("client"), EgressIsolates: true,
			Egress: []netpol.Rule{{Peers: []netpol.Peer{{PodSelector: sel("server")}}, Ports: port}}})
	return netpol.Compile(in)
}

// inNS runs fn on a thread in the named namespace.
func inNS(name string, fn func() error) error {
	return ns.WithNetNSPath(netns.Path(name), func(ns.NetNS) error { return fn() })
}

// cost is a CPU time with the wall time beside it.
type cost struct{ cpu, wall time.Duration }

func (c cost) String() string {
	return fmt.Sprintf("%.1f ms [%.1f ms]", float64(c.cpu.Microseconds())/1000, float64(c.wall.Microseconds())/1000)
}

type engineCosts struct{ full, policy, pod cost }

// processCPU is the process's user and system time: the kernel applies a
// batch in the sending thread's system call, so it counts the kernel's
// work too, and it does not grow when other processes share the CPUs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(fn func() error) (cost, error) {
	start, cpu0 := time.Now(), processCPU()
	err := fn()
	return cost{processCPU() - cpu0, time.Since(start)}, err
}

// engine times the agent's compile-and-apply in the namespace: from
// scratch, then changes alternating between two values of one policy's
// port and of one pod's labels, with one Compiler and one Applier as the
// agent keeps them.
func engine(nsName string, s netpoltest.Scale, changes int) (engineCosts, error) {
	var e engineCosts
	err := inNS(nsName, func() error {
		defer netpolnft.Remove()
		in := s.Cluster()
		if _, err := netpolnft.Remove(); err != nil {
			return err
		}
		var k netpol.Compiler
		a := &netpolnft.Applier{}
		var err error
		if e.full, err = measure(func() error { _, err := a.Apply(k.Compile(in)); return err }); err != nil {
			return err
		}
		series := func(edit func(i int)) (cost, error) {
			var cpu, wall []time.Duration
			for i := 1; i <= changes; i++ {
				edit(i)
				c, err := measure(func() error { _, err := a.Apply(k.Compile(in)); return err })
				if err != nil {
					return cost{}, err
				}
				cpu, wall = append(cpu, c.cpu), append(wall, c.wall)
			}
			return cost{median(cpu), median(wall)}, nil
		}
		if e.policy, err = series(func(i int) { in.Policies[0] = s.Policy(0, uint16(80+i%2)) }); err != nil {
			return err
		}
		e.pod, err = series(func(i int) { in.Pods[0] = s.Pod(0, fmt.Sprintf("app%d", i%2*9)) })
		return err
	})
	return e, err
}

// MemoryCommand is the hidden weft-lab subcommand that holds the policy
// controller's state for the memory figure (RunMemory).
const MemoryCommand = "policy-memory"

// Memory is what MemoryCommand reports.
type Memory struct {
	BaseRSSKiB, RSSKiB, HeapKiB int
	ApplyNanos                  int64
}

// policyMemory runs MemoryCommand in the namespace and reads its report.
func policyMemory(ctx context.Context, o Options, nsName string) (Memory, error) {
	exe, err := os.Executable()
	if err != nil {
		return Memory{}, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, MemoryCommand)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := netns.Start(netns.Path(nsName), cmd); err != nil {
		return Memory{}, err
	}
	if err := cmd.Wait(); err != nil {
		return Memory{}, fmt.Errorf("%s: %w: %s", MemoryCommand, err, strings.TrimSpace(errb.String()))
	}
	var m Memory
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		return Memory{}, fmt.Errorf("%s said %q: %w", MemoryCommand, out.String(), err)
	}
	return m, nil
}
