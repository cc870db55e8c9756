package lab_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/labtest"
)

// TestLabUnderlayTwoSegments builds the underlay of a two-segment lab with
// its datastore and two nodes (no agents): nodes on different segments
// reach each other through the router only, the datastore answers from
// both segments, the host gains nothing, and Down leaves nothing.
func TestLabUnderlayTwoSegments(t *testing.T) {
	before := labtest.HostNetwork(t)
	cfg := labtest.Config(t, "wtl")
	cfg.Segments = 2
	labtest.RemoveAtEnd(t, cfg.Name)
	l, err := lab.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.BuildBase(ctx); err != nil {
		t.Fatal(err)
	}
	macsBefore := bridgeMACs(t, l)
	n1, err := l.NewNode(0)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := l.NewNode(0)
	if err != nil {
		t.Fatal(err)
	}
	n3, err := l.NewNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unwire(n3.Name); err != nil {
		t.Fatal(err)
	}
	// The segments' bridges keep their MACs as nodes come and go, so that
	// no node's ARP entry for the datastore goes stale.
	if after := bridgeMACs(t, l); after != macsBefore {
		t.Fatalf("underlay bridge MACs changed as nodes joined and left: %s → %s", macsBefore, after)
	}
	if n1.Segment == n2.Segment {
		t.Fatalf("nodes alternate segments: both on %d", n1.Segment)
	}
	if n1.UnderlayIP.String() != "172.30.1.1" || n2.UnderlayIP.String() != "172.30.2.2" {
		t.Fatalf("underlay addresses %s, %s", n1.UnderlayIP, n2.UnderlayIP)
	}
	r, err := lab.Ping(ctx, n1.Netns, n2.UnderlayIP, 3, 10*time.Millisecond, time.Second)
	if err != nil || r.Received != 3 {
		t.Fatalf("n1 → n2 across the router: %+v %v", r, err)
	}
	for _, n := range []*lab.NodeState{n1, n2} {
		c, err := lab.DialIn(n.Netns)(ctx, "tcp", net.JoinHostPort(l.DatastoreIP().String(), "2379"))
		if err != nil {
			t.Fatalf("datastore from %s (segment %d): %v", n.Name, n.Segment, err)
		}
		c.Close()
	}
	// Nothing leads out of a node: the kernel has no route to an address
	// outside the lab (a lookup only; nothing is sent).
	err = ns.WithNetNSPath(netns.Path(n1.Netns), func(ns.NetNS) error {
		if rs, err := netlink.RouteGet(net.ParseIP("192.0.2.1")); err == nil {
			return fmt.Errorf("node %s routes 192.0.2.1: %v", n1.Name, rs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := labtest.HostNetwork(t); after != before {
		t.Fatalf("host namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if err := lab.Down(cfg.Name); err != nil {
		t.Fatal(err)
	}
	labtest.AssertGone(t, cfg.Name)
	if process.Alive(l.Datastore.PID) {
		t.Fatalf("datastore process %d left", l.Datastore.PID)
	}
}

// TestLabRejectsBadConfig: bad input is a clear error and leaves nothing.
func TestLabRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*lab.Config)
		want string
	}{
		{"name", func(c *lab.Config) { c.Name = "Bad-Name" }, "invalid lab name"},
		{"backend", func(c *lab.Config) { c.Backend = "ipip" }, "--backend"},
		{"segments", func(c *lab.Config) { c.Segments = 3 }, "--segments"},
		{"nodes", func(c *lab.Config) { c.Nodes = 0 }, "--nodes"},
		{"binary", func(c *lab.Config) { c.CNIBin = "/nonexistent/weft-cni" }, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := labtest.Config(t, "wtl")
			tc.edit(&cfg)
			_, err := lab.Up(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
			if lab.Exists(cfg.Name) {
				lab.Down(cfg.Name)
				t.Fatalf("lab %s left behind", cfg.Name)
			}
		})
	}
}

func bridgeMACs(t *testing.T, l *lab.Lab) string {
	t.Helper()
	var macs []string
	err := ns.WithNetNSPath(netns.Path(l.Underlay), func(ns.NetNS) error {
		for seg := 1; seg <= l.Segments; seg++ {
			br, err := netlink.LinkByName(lab.SegmentBridge(seg))
			if err != nil {
				return err
			}
			macs = append(macs, br.Attrs().HardwareAddr.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(macs, ",")
}
