// Package cnibench measures how fast pods get their network: N pod ADDs
// then N DELs through libcni (what containerd and CRI-O use), for
// weft-cni and, in the same run, for the reference bridge + host-local
// plugins, runs interleaved so that the machine's load hits both alike.
// Everything happens inside a node namespace of its own and pod namespaces
// of its own, all removed afterwards; the host's namespace is not touched.
package cnibench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/weftnet/weft/internal/netns"
)

// Options says what to measure.
type Options struct {
	Pods      int    // pods per run (ADDs, then as many DELs)
	Workers   []int  // concurrent runtime calls, one measurement each
	Rounds    int    // runs of each plugin per worker count, interleaved
	PluginDir string // holds weft-cni
	RefDir    string // holds the reference bridge and host-local
	Out       io.Writer
}

// plugin is one side of the comparison.
type plugin struct {
	name string
	conf *libcni.NetworkConfig
}

// run is one measured run: per-pod latencies and the phases' wall time.
type run struct {
	add, del         []time.Duration
	addWall, delWall time.Duration
}

// Run measures and prints the figures to opts.Out.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Pods < 1 || opts.Pods > 60000 || opts.Rounds < 1 || len(opts.Workers) == 0 {
		return fmt.Errorf("need 1..60000 pods, at least one round and one worker count")
	}
	for _, w := range opts.Workers {
		if w < 1 || w > 256 {
			return fmt.Errorf("workers %d: want 1..256", w)
		}
	}
	if _, err := os.Stat(filepath.Join(opts.PluginDir, "weft-cni")); err != nil {
		return fmt.Errorf("weft-cni not found in %s (run `make build`): %w", opts.PluginDir, err)
	}
	tag := randTag()
	work, err := os.MkdirTemp("", "weft-bench-cni-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	nodeName := "weftbench-" + tag
	node, err := netns.Create(nodeName)
	if err != nil {
		return fmt.Errorf("node namespace: %w", err)
	}
	defer func() {
		node.Close()
		if derr := netns.Delete(nodeName); derr != nil && err == nil {
			err = derr
		}
	}()
	pods, err := makePods(tag, opts.Pods)
	defer func() {
		for _, p := range pods {
			if derr := netns.Delete(p); derr != nil && err == nil {
				err = derr
			}
		}
	}()
	if err != nil {
		return err
	}

	plugins, err := configs(work)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{opts.PluginDir, opts.RefDir}, filepath.Join(work, "cache"), nil)
	fmt.Fprintf(opts.Out, "weft bench cni: %d pods per run, ADD then DEL, %d interleaved rounds per worker count, in namespace %s\n",
		opts.Pods, opts.Rounds, nodeName)

	var rows []row
	for _, w := range opts.Workers {
		runs := map[string][]run{}
		for r := 0; r < opts.Rounds; r++ {
			order := plugins
			if r%2 == 1 {
				order = []plugin{plugins[1], plugins[0]}
			}
			for _, p := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := measure(ctx, cni, node, p, pods, w)
				if err != nil {
					return fmt.Errorf("%s, %d workers: %w", p.name, w, err)
				}
				runs[p.name] = append(runs[p.name], res)
			}
		}
		rows = append(rows, summarize(plugins[0].name, w, runs[plugins[0].name]), summarize(plugins[1].name, w, runs[plugins[1].name]))
	}
	report(opts.Out, rows)
	return nil
}

func randTag() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func makePods(tag string, n int) ([]string, error) {
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("weftbench-%s-p%d", tag, i)
		p, err := netns.Create(name)
		if err != nil {
			return names, fmt.Errorf("pod namespace: %w", err)
		}
		p.Close()
		names = append(names, name)
	}
	return names, nil
}

// configs are the two networks: weft-cni, and the reference bridge with
// host-local, each with its own bridge, subnet and store. Both speak CNI
// 1.0.0, the newest the reference plugins know.
func configs(work string) ([]plugin, error) {
	weft, err := libcni.NetworkPluginConfFromBytes(fmt.Appendf(nil,
		`{"cniVersion":"1.0.0","name":"weft-bench","type":"weft-cni","bridge":"weftbench0","subnet":"10.251.0.0/16","dataDir":%q}`,
		filepath.Join(work, "weft")))
	if err != nil {
		return nil, err
	}
	ref, err := libcni.NetworkPluginConfFromBytes(fmt.Appendf(nil,
		`{"cniVersion":"1.0.0","name":"ref-bench","type":"bridge","bridge":"refbench0","isGateway":true,"ipMasq":false,
		  "ipam":{"type":"host-local","subnet":"10.252.0.0/16","dataDir":%q}}`,
		filepath.Join(work, "host-local")))
	if err != nil {
		return nil, err
	}
	return []plugin{{"weft-cni", weft}, {"bridge+host-local", ref}}, nil
}

// measure ADDs every pod, then DELs every pod, with workers concurrent
// calls, each made from the node namespace.
func measure(ctx context.Context, cni *libcni.CNIConfig, node ns.NetNS, p plugin, pods []string, workers int) (run, error) {
	var r run
	var err error
	r.add, r.addWall, err = phase(pods, workers, func(i int) error {
		return node.Do(func(ns.NetNS) error {
			_, err := cni.AddNetwork(ctx, p.conf, rtConf(pods, i))
			return err
		})
	})
	if err != nil {
		// Take down what was made before giving up.
		phase(pods, workers, func(i int) error {
			return node.Do(func(ns.NetNS) error { return cni.DelNetwork(ctx, p.conf, rtConf(pods, i)) })
		})
		return r, fmt.Errorf("ADD: %w", err)
	}
	r.del, r.delWall, err = phase(pods, workers, func(i int) error {
		return node.Do(func(ns.NetNS) error { return cni.DelNetwork(ctx, p.conf, rtConf(pods, i)) })
	})
	if err != nil {
		return r, fmt.Errorf("DEL: %w", err)
	}
	return r, nil
}

func rtConf(pods []string, i int) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench%06d", i), NetNS: netns.Path(pods[i]), IfName: "eth0"}
}

// phase calls op for every pod from workers goroutines and returns each
// call's latency and the phase's wall time. The first error is returned
// after every call has finished.
func phase(pods []string, workers int, op func(i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, len(pods))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				err := op(i)
				lat[i] = time.Since(t)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("pod %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range pods {
		next <- i
	}
	close(next)
	wg.Wait()
	return lat, time.Since(start), first
}
