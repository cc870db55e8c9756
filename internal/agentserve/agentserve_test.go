package agentserve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// node is what agentserve reads of an agent: a fixed status with one peer,
// as the agent reports once it holds its lease and has reconciled.
type node struct {
	mu sync.Mutex
	st agent.Status
}

func (n *node) Status() agent.Status { n.mu.Lock(); defer n.mu.Unlock(); return n.st }
func (n *node) Ready() error         { return nil }

// twoNodes makes two namespaces joined by a veth underlay (192.168.61.0/24),
// each with Weft's bridge holding its subnet's gateway and a direct route
// to the other's subnet, the way the host-gw path is programmed.
func twoNodes(t *testing.T) (a, b ns.NetNS, bUnderlay string) {
	a, b = testnet.NewNS(t, "srv"), testnet.NewNS(t, "srv")
	bUnderlay = "ub"
	testnet.Veth(t, a, "ua", b, bUnderlay)
	setup := func(n ns.NetNS, link, underlay, gw, peerSubnet, peerUnderlay string) {
		if err := n.Do(func(ns.NetNS) error {
			if _, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix(gw), 1500); err != nil {
				return err
			}
			l, err := netlink.LinkByName(link)
			if err != nil {
				return err
			}
			addr, _ := netlink.ParseAddr(underlay)
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			_, dst, _ := net.ParseCIDR(peerSubnet)
			return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(peerUnderlay), Protocol: names.RouteProtocol})
		}); err != nil {
			t.Fatal(err)
		}
	}
	setup(a, "ua", "192.168.61.1/24", "10.244.1.1/24", "10.244.2.0/24", "192.168.61.2")
	setup(b, bUnderlay, "192.168.61.2/24", "10.244.2.1/24", "10.244.1.0/24", "192.168.61.1")
	return a, b, bUnderlay
}

func status(name, subnet, peer, peerSubnet, peerUnderlay string) *node {
	return &node{st: agent.Status{
		Node: name, Backend: cluster.BackendAuto, MTU: 1500, StartTime: time.Now(),
		Lease: &store.Lease{Node: name, Subnet: netip.MustParsePrefix(subnet)},
		Peers: []datapath.PeerPath{{Name: peer, Subnet: netip.MustParsePrefix(peerSubnet),
			UnderlayIP: netip.MustParseAddr(peerUnderlay), Path: "direct", Reason: "same L2 segment"}},
		Routes: 1,
	}}
}

func run(t *testing.T, n ns.NetNS, a Agent, cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Do(func(ns.NetNS) error { return Run(ctx, a, cfg) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func peersUntil(t *testing.T, c *agentapi.Client, what string, ok func(agentapi.Peer) bool) agentapi.Peer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := c.Peers(context.Background())
		if err == nil && len(ps) == 1 && ok(ps[0]) {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer never %s: %+v (%v)", what, ps, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPeersReachableThenCutOffThroughTheAPI(t *testing.T) {
	nsA, nsB, bUnderlay := twoNodes(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	probes := Config{Logger: quiet, Poll: 20 * time.Millisecond, ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 40 * time.Millisecond, DownAfter: 300 * time.Millisecond}
	cfgA, cfgB := probes, probes
	cfgA.Dirs.Run, cfgA.Dirs.Data, cfgA.DatastoreKind = t.TempDir(), t.TempDir(), "etcd"
	cfgB.Dirs.Run, cfgB.Dirs.Data = t.TempDir(), t.TempDir()
	cfgA.MetricsAddr = "127.0.0.1:9755" // inside node A's namespace
	handed := make(chan cnievents.Event, 4)
	cfgA.CNIEvent = func(ev cnievents.Event) { handed <- ev }
	run(t, nsA, status("wto-a", "10.244.1.0/24", "wto-b", "10.244.2.0/24", "192.168.61.2"), cfgA)
	run(t, nsB, status("wto-b", "10.244.2.0/24", "wto-a", "10.244.1.0/24", "192.168.61.1"), cfgB)

	c := agentapi.NewClient(cfgA.Dirs.Run)
	up := peersUntil(t, c, "reachable", func(p agentapi.Peer) bool { return p.State == agentapi.Reachable })
	if up.RTTMillis <= 0 || up.Path != "direct" || up.UnderlayIP != netip.MustParseAddr("192.168.61.2") {
		t.Errorf("reachable peer: %+v", up)
	}

	// Cut B off: its underlay link goes down.
	if err := nsB.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(bUnderlay)
		if err != nil {
			return err
		}
		return netlink.LinkSetDown(l)
	}); err != nil {
		t.Fatal(err)
	}
	down := peersUntil(t, c, "down", func(p agentapi.Peer) bool { return p.Down })
	if down.State != agentapi.Unreachable || !strings.Contains(down.LastError, "10.244.2.1:9754") {
		t.Errorf("cut-off peer: %+v", down)
	}
	s, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Unreachable != 1 || len(s.Degraded) != 1 || !strings.Contains(s.Degraded[0], "wto-b") ||
		s.Subnet != netip.MustParsePrefix("10.244.1.0/24") || s.AddressesFree != 253 || s.Datastore.Kind != "etcd" {
		t.Errorf("status with a peer down: %+v", s)
	}

	// The plugin's events and the peer states show in the metrics, and
	// the events go on to the agent's hook, the pod's fields included.
	add := cnievents.Event{Verb: "ADD", OK: true, Seconds: 0.01,
		Pod: &cnievents.Pod{Namespace: "x", Name: "a", ContainerID: "c1", IP: "10.244.1.5"}}
	cnievents.Send(filepath.Join(cfgA.Dirs.Run, cniconf.EventsSocket), add)
	select {
	case ev := <-handed:
		if ev.Verb != "ADD" || ev.Pod == nil || *ev.Pod != *add.Pod {
			t.Errorf("hook got %+v, want %+v", ev, add)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ADD never reached the CNIEvent hook")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := scrape(t, nsA)
		if strings.Contains(text, `weft_peers{state="unreachable"} 1`) && strings.Contains(text, `weft_peers_down 1`) &&
			strings.Contains(text, `weft_cni_requests_total{result="success",verb="ADD"} 1`) &&
			strings.Contains(text, `weft_datapath_entries{kind="route"} 1`) && strings.Contains(text, "weft_ipam_addresses_free 253") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed the down peer and the ADD:\n%s", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape reads /metrics from inside the node's namespace (loopback).
func scrape(t *testing.T, n ns.NetNS) string {
	t.Helper()
	// The transport dials on a goroutine of its own: make it dial from
	// inside the namespace.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = n.Do(func(ns.NetNS) error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	resp, err := c.Get("http://127.0.0.1:9755/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
