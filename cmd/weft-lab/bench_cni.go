package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/lab/bench/cnibench"
)

func init() {
	registerBench("cni", "pod ADD/DEL latency and pods/s: weft-cni against bridge+host-local", runBenchCNI)
}

func runBenchCNI(args []string) error {
	fs := flag.NewFlagSet("weft bench cni", flag.ContinueOnError)
	pods := fs.Int("n", 200, "pods per run: that many ADDs, then as many DELs")
	workers := fs.String("workers", "1,8", "comma-separated concurrent-call counts, one measurement each")
	rounds := fs.Int("rounds", 3, "interleaved runs of each plugin per worker count")
	pluginDir := fs.String("plugin-dir", "", "directory holding weft-cni (default: next to this binary)")
	refDir := fs.String("ref-dir", cnibench.RefDir, "directory holding the reference bridge and host-local plugins")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ws []int
	for _, s := range strings.Split(*workers, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-workers %q: %w", *workers, err)
		}
		ws = append(ws, w)
	}
	if *pluginDir == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*pluginDir = filepath.Dir(self)
	}
	if err := cnibench.EnsureReference(*refDir, os.Stderr); err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	return cnibench.Run(ctx, cnibench.Options{
		Pods: *pods, Workers: ws, Rounds: *rounds,
		PluginDir: *pluginDir, RefDir: *refDir, Out: os.Stdout,
	})
}
