package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/names"
)

func init() {
	register("doctor", "examine this node: peers' pods reachable, path MTU, datapath drift, leaked addresses, CNI STATUS", runDoctor)
}

func runDoctor(args []string) error {
	fs, runDir, out := apiFlags("doctor")
	var o doctor.Options
	// The directories default to the ones the running agent reports, and
	// to Weft's standard paths when it does not answer.
	fs.StringVar(&o.DataDir, "data-dir", "", "Weft's data directory (node state, IPAM leases) (default: the agent's, else "+names.DataDir+")")
	fs.StringVar(&o.ConfDir, "cni-conf-dir", "", "CNI config directory (default: the agent's, else "+names.CNIConfDir+")")
	fs.StringVar(&o.BinDir, "cni-bin-dir", "", "CNI plugin directory (default: the agent's, else "+names.CNIBinDir+")")
	fs.DurationVar(&o.Timeout, "timeout", time.Second, "how long one probe waits for its answer")
	fs.IntVar(&o.Tries, "tries", 3, "probes sent before a peer (or a packet size) counts as lost")
	fs.DurationVar(&o.LeakGrace, "leak-grace", doctor.LeakGrace, "how old an address lease without its pod must be to count as leaked (younger: its ADD may still be running)")
	releaseLeaks := fs.Bool("release-leaks", false, "release the addresses doctor reports as leaked, through the plugin's CNI DEL, and exit")
	if err := parseAPIFlags(fs, args, out); err != nil {
		return err
	}
	if o.Tries < 1 || o.Tries > 10 {
		return fmt.Errorf("--tries %d: want 1 to 10", o.Tries)
	}
	if o.Timeout <= 0 || o.Timeout > 10*time.Second {
		return fmt.Errorf("--timeout %s: want more than 0 and at most 10s", o.Timeout)
	}
	o.RunDir = *runDir
	ctx, cancel := interruptible()
	defer cancel()
	if *releaseLeaks {
		return runReleaseLeaks(ctx, o, *out)
	}
	rep := doctor.Run(ctx, o)
	if *out == "json" {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printDoctor(os.Stdout, rep)
	}
	if rep.Failed() {
		return fmt.Errorf("%d problem(s) found", rep.Count(doctor.Fail))
	}
	return nil
}

func runReleaseLeaks(ctx context.Context, o doctor.Options, out string) error {
	released, err := doctor.ReleaseLeaks(ctx, o)
	if out == "json" {
		if jerr := printJSON(released); jerr != nil {
			return jerr
		}
	} else {
		for _, r := range released {
			fmt.Printf("released %s (container %s, %s)\n", r.Addr, r.ContainerID, r.IfName)
		}
		if len(released) == 0 && err == nil {
			fmt.Println("no leaked addresses")
		}
	}
	return err
}

func printDoctor(w io.Writer, rep doctor.Report) {
	if rep.Node != "" {
		fmt.Fprintf(w, "node %s, subnet %s, backend %s, pod MTU %d\n\n", rep.Node, rep.Subnet, orNone(string(rep.Backend), rep.Backend != ""), rep.MTU)
	}
	for _, f := range rep.Findings {
		what := f.Check
		if f.Peer != "" {
			what += " " + f.Peer
		}
		fmt.Fprintf(w, "[%s] %s: %s\n", f.Result, what, f.Detail)
		if f.Fix != "" && f.Result != doctor.OK {
			fmt.Fprintf(w, "       fix: %s\n", f.Fix)
		}
	}
	fmt.Fprintf(w, "\n%d ok, %d warnings, %d problems\n", rep.Count(doctor.OK), rep.Count(doctor.Warn), rep.Count(doctor.Fail))
}
