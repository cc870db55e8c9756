// Command weft-lab runs a whole Weft cluster on one machine in network
// namespaces, and the benchmarks that need one. Operators reach it as
// `weft lab ...` and `weft bench cni|throughput|join|scale|policy|chaos`; it is a binary of
// its own because it embeds an etcd server and a Kubernetes client that
// the node agent must not pay for.
package main

import "github.com/weftnet/weft/internal/cli"

var commands = cli.NewSet("weft")

func register(name, summary string, run func(args []string) error) {
	commands.Register(name, summary, run)
}

func registerHidden(name string, run func(args []string) error) {
	commands.RegisterHidden(name, run)
}

var benches = cli.NewSet("weft bench")

func registerBench(name, summary string, run func(args []string) error) {
	benches.Register(name, summary, run)
}

var interruptible = cli.Interruptible

func init() {
	register("bench", "run a benchmark (cni, throughput, join, scale, policy, chaos)", benches.Run)
}

func main() { commands.Main() }
