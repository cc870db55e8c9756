// Command weft is Weft's node agent and its operator's tool: the agent, the
// one-machine lab, status, peers, preflight, doctor and uninstall. Each
// subcommand lives in a file of its own and registers itself here.
package main

import (
	"fmt"
	"os"
	"sort"
)

// command is one `weft` subcommand.
type command struct {
	summary string
	run     func(args []string) error
	hidden  bool
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// registerHidden adds a subcommand that Weft runs itself (for example the
// lab's datastore process) and that the help text does not list.
func registerHidden(name string, run func(args []string) error) {
	commands[name] = command{run: run, hidden: true}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: weft COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'weft COMMAND -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "weft: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "weft %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
