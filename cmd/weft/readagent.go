package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/names"
)

// apiFlags are the flags every command that reads the agent takes.
func apiFlags(name string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	def := names.RunDir
	if env := os.Getenv("WEFT_RUN_DIR"); env != "" {
		// Set by `weft lab exec NODE`, where each node's agent has a run
		// dir of its own.
		def = env
	}
	runDir := fs.String("run-dir", def, "the agent's run directory (holds its socket; default $WEFT_RUN_DIR, else "+names.RunDir+")")
	out := fs.String("o", "text", "output: text or json")
	return fs, runDir, out
}

// parseAPIFlags parses the flags of a command that reads the agent: no
// arguments besides flags, and -o text or json.
func parseAPIFlags(fs *flag.FlagSet, args []string, out *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *out != "text" && *out != "json" {
		return fmt.Errorf("-o %q: want text or json", *out)
	}
	return nil
}

// readAgent is a command that asks the local agent one question (get)
// and prints the answer as JSON or, by default, as text.
func readAgent[T any](name string, args []string, get func(*agentapi.Client, context.Context) (T, error), text func(io.Writer, T)) error {
	fs, runDir, out := apiFlags(name)
	if err := parseAPIFlags(fs, args, out); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := get(agentapi.NewClient(*runDir), ctx)
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(v)
	}
	text(os.Stdout, v)
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
