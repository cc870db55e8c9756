// Package lab_test runs whole Weft clusters in network namespaces (the
// lab): real agents, the real CNI plugin through libcni, a real etcd, real
// packets between pods. Each test's lab has a unique name and is removed,
// pass or fail.
package lab_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testbin"
)

// config is a lab config with a unique name and the real binaries.
func config(t *testing.T, backend string, segments, nodes, pods int) lab.Config {
	t.Helper()
	weft, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	cni, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.DefaultConfig()
	cfg.Name = fmt.Sprintf("wtl%06d", rand.IntN(1e6))
	cfg.WeftBin, cfg.CNIBin = weft, cni
	cfg.Backend, cfg.Segments, cfg.Nodes, cfg.PodsPerNode = backend, segments, nodes, pods
	cfg.ReadyTimeout = 45 * time.Second
	return cfg
}

// up builds a lab and removes it when the test ends, checking that
// nothing of it is left and that the host's namespace did not change.
func up(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	before := hostNetwork(t)
	t.Cleanup(func() {
		if t.Failed() {
			if l, err := lab.Open(cfg.Name, nil); err == nil {
				if b, err := os.ReadFile(l.State.Datastore.Log); err == nil {
					t.Logf("datastore log:\n%s", tail(string(b), 30))
				}
				for _, n := range l.Nodes {
					if b, err := os.ReadFile(n.AgentLog); err == nil {
						t.Logf("agent log of %s:\n%s", n.Name, tail(string(b), 30))
					}
				}
			}
		}
		if err := lab.Down(cfg.Name); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left, _ := netns.List(cfg.Name + "-"); len(left) > 0 {
			t.Errorf("namespaces left after down: %v", left)
		}
		if _, err := os.Stat(lab.Dir(cfg.Name)); !os.IsNotExist(err) {
			t.Errorf("lab directory left after down")
		}
		if after := hostNetwork(t); after != before {
			t.Errorf("the host's namespace changed:\nbefore\n%s\nafter\n%s", before, after)
		}
	})
	l, err := lab.Up(context.Background(), cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostNetwork is the host namespace's IPv4 addresses and routes (the
// lab is IPv4 only).
func hostNetwork(t *testing.T) string {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintln(&b, a.IPNet)
	}
	for _, r := range routes {
		fmt.Fprintln(&b, r.Dst, r.Gw, r.LinkIndex)
	}
	return b.String()
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fullMatrix checks every pod against every other, three echoes a pair.
func fullMatrix(t *testing.T, l *lab.Lab) {
	t.Helper()
	m, err := l.WaitMatrix(context.Background(), 20*time.Second)
	if err != nil {
		var b strings.Builder
		if m != nil {
			m.Print(&b)
		}
		t.Fatalf("matrix: %v\n%s", err, b.String())
	}
	m, err = l.CheckMatrix(context.Background(), 3)
	if err != nil || !m.Full() {
		var b strings.Builder
		m.Print(&b)
		t.Fatalf("matrix with 3 echoes a pair: %v\n%s", err, b.String())
	}
}

// kernel snapshots a node's network state.
func kernel(t *testing.T, l *lab.Lab, node string) lab.KernelState {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	k, err := l.Kernel(n.Netns)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// podOn returns the first pod of node.
func podOn(t *testing.T, l *lab.Lab, node string) *lab.PodState {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Pods) == 0 {
		t.Fatalf("node %s has no pod", node)
	}
	return n.Pods[0]
}

// vtepMAC is the MAC of node's VXLAN device, from the kernel.
func vtepMAC(t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	for _, line := range kernel(t, l, node).Lines {
		if strings.HasPrefix(line, "link name=weft.vxlan ") {
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "mac="); ok {
					return v
				}
			}
		}
	}
	t.Fatalf("node %s has no weft.vxlan device", node)
	return ""
}

// vxlanAddr is the address a peer's subnet is routed via over VXLAN.
func vxlanAddr(p netip.Prefix) string { return p.Masked().Addr().String() }

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// datastoreReachable connects to the datastore from every node, at once:
// the underlay must carry the agents' datastore traffic across joins and
// leaves (a bridge whose MAC follows its ports would strand every node's
// ARP entry for the datastore).
func datastoreReachable(t *testing.T, l *lab.Lab) {
	t.Helper()
	addr := strings.TrimPrefix(l.State.Datastore.Endpoint, "http://")
	for _, n := range l.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := lab.DialIn(n.Netns)(ctx, "tcp", addr)
		cancel()
		if err != nil {
			t.Errorf("node %s cannot reach the datastore at %s: %v", n.Name, addr, err)
			continue
		}
		c.Close()
	}
}
