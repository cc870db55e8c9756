package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/internal/lab/bench"
)

func init() {
	registerBench("throughput", "pod-to-pod iperf3 throughput (vxlan, host-gw, one node) as ratios of the underlay's, in labs", benchThroughput)
	registerBench("join", "time from a new node's agent start to the first reply from a pod on it (vxlan vs host-gw), in labs", benchJoin)
	registerBench("scale", "time for one agent to program 1000 peers, and its RSS, in a lab", benchScale)
}

// benchFlags are every lab benchmark's flags.
func benchFlags(name string, rounds int) (*flag.FlagSet, *bench.Options, *string) {
	o := &bench.Options{Out: os.Stdout, Log: os.Stderr}
	fs := flag.NewFlagSet("weft bench "+name, flag.ContinueOnError)
	fs.IntVar(&o.Rounds, "rounds", rounds, "interleaved rounds; figures are their medians")
	binDir := fs.String("bin-dir", "", "directory holding weft, weft-cni and weft-lab (default: this binary's directory)")
	return fs, o, binDir
}

func benchBins(o *bench.Options, binDir string) error {
	if o.Rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", o.Rounds)
	}
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		binDir = filepath.Dir(exe)
	}
	o.WeftBin, o.CNIBin = filepath.Join(binDir, "weft"), filepath.Join(binDir, "weft-cni")
	return nil
}

// ensureIperf3 installs Debian's iperf3 when it is missing.
func ensureIperf3() error {
	if _, err := exec.LookPath("iperf3"); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "iperf3 missing: installing Debian's iperf3")
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "iperf3")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("install iperf3: %w", err)
	}
	return nil
}

func benchThroughput(args []string) error {
	// Nine rounds: on two shared vCPUs one round's pod/underlay ratio
	// swings by ±15%, and the median of five still moved by 0.1 from one
	// run of the benchmark to the next.
	fs, o, binDir := benchFlags("throughput", 9)
	dur := fs.Duration("time", 2*time.Second, "length of each iperf3 run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := benchBins(o, *binDir); err != nil {
		return err
	}
	if err := ensureIperf3(); err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	return bench.Throughput(ctx, *o, *dur)
}

func benchJoin(args []string) error {
	fs, o, binDir := benchFlags("join", 5)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := benchBins(o, *binDir); err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	return bench.Join(ctx, *o)
}

func benchScale(args []string) error {
	fs, o, binDir := benchFlags("scale", 3)
	peers := fs.Int("peers", 1000, "number of peer records")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := benchBins(o, *binDir); err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	return bench.Scale(ctx, *o, *peers)
}
