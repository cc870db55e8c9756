// Package lab_test runs whole Weft clusters in network namespaces (the
// lab): real agents, the real CNI plugin through libcni, a real etcd, real
// packets between pods. Each test's lab has a unique name and is removed,
// pass or fail.
package lab_test

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testkit/labtest"
)

// config is a lab config with a unique name and the real binaries.
func config(t *testing.T, backend cluster.Backend, segments, nodes, pods int) lab.Config {
	t.Helper()
	cfg := labtest.Config(t, "wtl")
	cfg.Backend, cfg.Segments, cfg.Nodes, cfg.PodsPerNode = backend, segments, nodes, pods
	cfg.ReadyTimeout = 45 * time.Second
	return cfg
}

// fullMatrix checks every pod against every other, three echoes a pair.
func fullMatrix(t *testing.T, l *lab.Lab) {
	t.Helper()
	labtest.FullMatrix(t, l, 20*time.Second)
}

// vtepMAC is the MAC of node's VXLAN device, from the kernel.
func vtepMAC(t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	mac := labtest.VTEPMAC(t, l, node)
	if mac == "" {
		t.Fatalf("node %s has no weft.vxlan device", node)
	}
	return mac
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
	u, err := url.Parse(l.State.Datastore.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	addr := u.Host
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
