// Package cli is the small command table behind Weft's binaries: a
// subcommand registers itself from a file of its own, and the binary's
// main dispatches on the first argument.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Command is one subcommand.
type Command struct {
	Summary string
	Run     func(args []string) error
	// Hidden commands are run by Weft itself (the lab's datastore, say)
	// and left out of the help text.
	Hidden bool
}

// Set is a binary's (or a command's) table of subcommands.
type Set struct {
	Prog     string
	Commands map[string]Command
}

// NewSet returns an empty table for the program prog ("weft", "weft bench").
func NewSet(prog string) *Set { return &Set{Prog: prog, Commands: map[string]Command{}} }

// Register adds a subcommand.
func (s *Set) Register(name, summary string, run func(args []string) error) {
	s.Commands[name] = Command{Summary: summary, Run: run}
}

// RegisterHidden adds a subcommand that the help text does not list.
func (s *Set) RegisterHidden(name string, run func(args []string) error) {
	s.Commands[name] = Command{Run: run, Hidden: true}
}

// Usage lists the visible subcommands.
func (s *Set) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\ncommands:\n", s.Prog)
	names := make([]string, 0, len(s.Commands))
	for n, c := range s.Commands {
		if !c.Hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, s.Commands[n].Summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", s.Prog)
}

// Run dispatches args (without the program name) to a subcommand.
func (s *Set) Run(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		s.Usage(os.Stderr)
		return fmt.Errorf("no command given")
	}
	c, ok := s.Commands[args[0]]
	if !ok {
		s.Usage(os.Stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return c.Run(args[1:])
}

// Main runs the binary's command line and exits: 2 when no known command
// is named, 1 when the command fails (a bad flag included).
func (s *Set) Main() {
	args := os.Args[1:]
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		s.Usage(os.Stderr)
		os.Exit(2)
	}
	if _, ok := s.Commands[args[0]]; !ok {
		fmt.Fprintf(os.Stderr, "%s: unknown command %q\n\n", s.Prog, args[0])
		s.Usage(os.Stderr)
		os.Exit(2)
	}
	if err := s.Run(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// The command's flag set has printed its flags: asking for
			// help is not a failure.
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", s.Prog, args[0], err)
		os.Exit(1)
	}
}

// Interruptible returns a context that ends on SIGINT or SIGTERM.
func Interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
