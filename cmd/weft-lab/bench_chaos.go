package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab/bench"
)

func init() {
	registerBench("chaos", "agents killed during pod churn, datastore and agent outages, a node reboot and a link flap, in a lab; fails on a broken invariant", benchChaos)
}

func benchChaos(args []string) error {
	c := bench.DefaultChaos()
	o := &bench.Options{Out: os.Stdout, Log: os.Stderr, Rounds: 1}
	fs := flag.NewFlagSet("weft bench chaos", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "", "directory holding weft, weft-cni and weft-lab (default: this binary's directory)")
	fs.IntVar(&c.Nodes, "nodes", c.Nodes, "nodes in the lab")
	fs.IntVar(&c.PodsPerNode, "pods-per-node", c.PodsPerNode, "long-lived pods per node, probed throughout")
	backend := fs.String("backend", string(c.Backend), "auto, host-gw or vxlan")
	fs.IntVar(&c.Churn, "churn", c.Churn, "pod ADD and DEL operations during the agent kills")
	fs.IntVar(&c.Kills, "kills", c.Kills, "agents killed with SIGKILL during the churn")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "the lab's lease TTL; the datastore and an agent are each down twice as long")
	fs.IntVar(&c.Flaps, "flaps", c.Flaps, "times a node's underlay link goes down and up")
	phases := fs.String("phases", strings.Join(bench.ChaosPhases, ","), "phases to run, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.Backend = cluster.Backend(*backend)
	c.Phases = strings.Split(*phases, ",")
	if err := benchBins(o, *binDir); err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	rep, err := bench.Chaos(ctx, *o, c)
	if rep != nil {
		rep.Print(o.Out)
	}
	if err != nil {
		return err
	}
	if b := rep.Broken(); len(b) > 0 {
		return fmt.Errorf("chaos run broke %d invariant(s): %s", len(b), strings.Join(b, "; "))
	}
	return nil
}
