package main

import "github.com/weftnet/weft/internal/cli"

// benches are the `weft bench NAME` benchmarks; each lives in a file of its
// own and registers itself. A benchmark prints figures and ratios against
// a peer measured in the same run; it is never a test.
var benches = cli.NewSet("weft bench")

func registerBench(name, summary string, run func(args []string) error) {
	benches.Register(name, summary, run)
}

func init() {
	register("bench", "run a benchmark (cni, throughput, join, scale, policy, chaos)", benches.Run)
}
