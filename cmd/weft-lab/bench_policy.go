package main

import (
	"fmt"
	"os"
	"time"

	"github.com/weftnet/weft/internal/lab/bench"
)

func init() {
	registerBench("policy", "NetworkPolicy at scale (1000 policies, 10,000 pods): apply times, memory, throughput ratio, in a lab", benchPolicy)
	registerHidden(bench.MemoryCommand, func(args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("%s takes no arguments", bench.MemoryCommand)
		}
		return bench.RunMemory(os.Stdout)
	})
}

func benchPolicy(args []string) error {
	fs, o, binDir := benchFlags("policy", 5)
	dur := fs.Duration("time", 2*time.Second, "length of each iperf3 run")
	changes := fs.Int("changes", 20, "policy changes and pod changes timed (each figure is their median)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *changes < 1 {
		return fmt.Errorf("--changes %d: want at least 1", *changes)
	}
	if err := benchBins(o, *binDir); err != nil {
		return err
	}
	if err := ensureIperf3(); err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	return bench.Policy(ctx, *o, *dur, *changes)
}
