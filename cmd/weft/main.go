// Command weft is Weft's node agent and its operator's tool: the agent,
// status, peers, preflight, doctor, uninstall and install-cni. Each
// subcommand lives in a file of its own and registers itself here. The lab
// and its benchmarks live in weft-lab, which `weft lab` runs, so that the
// agent on every node does not carry an etcd server in memory.
package main

import "github.com/weftnet/weft/internal/cli"

var commands = cli.NewSet("weft")

func register(name, summary string, run func(args []string) error) {
	commands.Register(name, summary, run)
}

var interruptible = cli.Interruptible

func main() { commands.Main() }
