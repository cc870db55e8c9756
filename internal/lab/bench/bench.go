// Package bench holds Weft's lab benchmarks: pod-to-pod throughput
// against the underlay, the time a new node takes to join, how fast one
// agent programs a thousand peers, NetworkPolicy at scale and chaos (the
// plugin's own benchmark, which needs no lab, is cnibench). Each builds its labs, measures
// interleaved runs, prints medians and ratios against a figure measured in
// the same run, and removes its labs. Benchmarks never assert: they report.
// The chaos run (chaos.go) also reports the invariants it saw broken (a
// duplicate or leaked address, a doctor failure, a partial matrix), and
// its command fails on them.
package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
)

// Options are common to every lab benchmark.
type Options struct {
	// WeftBin and CNIBin are the binaries the labs run.
	WeftBin, CNIBin string
	// Rounds is how many interleaved runs each figure is the median of.
	Rounds int
	Out    io.Writer
	Log    io.Writer
}

func (o Options) labConfig(backend cluster.Backend, nodes, pods int) lab.Config {
	cfg := lab.DefaultConfig()
	cfg.Name = fmt.Sprintf("wbench%04d", rand.IntN(1e4))
	cfg.WeftBin, cfg.CNIBin = o.WeftBin, o.CNIBin
	cfg.Backend, cfg.Nodes, cfg.PodsPerNode = backend, nodes, pods
	cfg.Log = o.Log
	return cfg
}

// withLab runs fn on a lab built from cfg and removes the lab afterwards.
func withLab(ctx context.Context, cfg lab.Config, fn func(*lab.Lab) error) (err error) {
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(); derr != nil && err == nil {
			err = fmt.Errorf("remove lab %s: %w", cfg.Name, derr)
		}
	}()
	return fn(l)
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax[T int64 | float64 | time.Duration](xs []T) (T, T) {
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)-1]
}
