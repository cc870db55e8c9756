package main

import (
	"fmt"
	"os"
	"sort"
)

// benches are the `weft bench NAME` benchmarks; each lives in a file of its
// own and registers itself. A benchmark prints figures and ratios against
// a peer measured in the same run; it is never a test.
var benches = map[string]command{}

func registerBench(name, summary string, run func(args []string) error) {
	benches[name] = command{summary: summary, run: run}
}

func init() {
	register("bench", "run a benchmark (cni, throughput, join, scale)", func(args []string) error {
		if len(args) == 0 || benches[args[0]].run == nil {
			fmt.Fprintln(os.Stderr, "usage: weft bench NAME [flags]\n\nbenchmarks:")
			names := make([]string, 0, len(benches))
			for n := range benches {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, benches[n].summary)
			}
			return fmt.Errorf("no benchmark named")
		}
		return benches[args[0]].run(args[1:])
	})
}
