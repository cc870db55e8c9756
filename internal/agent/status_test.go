package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

const envStatusChild = "WTA_AGENT_STATUS_CHILD"

// statusChild is what the child needs of the agent's Config (which as a
// whole does not encode: it holds functions and interfaces).
type statusChild struct {
	Node        string
	Backend     cluster.Backend
	ClusterCIDR netip.Prefix
	UnderlayIP  netip.Addr
	Dirs        names.Dirs
	Endpoint    string
	Peers       int
}

// statusChildIfAsked runs an agent in this (re-executed) test process,
// which the parent started inside a node's namespace, waits until it is
// ready and sees the expected peers, prints its Status as JSON and stops
// it. The agent runs in-process so that Status itself is what is tested;
// the process is in the node's namespace as a whole, as a real agent is.
func statusChildIfAsked() {
	spec := os.Getenv(envStatusChild)
	if spec == "" {
		return
	}
	var c statusChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{c.Endpoint}, ClusterCIDR: c.ClusterCIDR, SubnetLen: 24, TTL: time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg := agent.Config{NodeName: c.Node, Backend: c.Backend, ClusterCIDR: c.ClusterCIDR, UnderlayIP: c.UnderlayIP, Dirs: c.Dirs,
		Store: st, Metrics: metrics.New(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	for {
		s := a.Status()
		if s.Ready && len(s.Peers) == c.Peers {
			json.NewEncoder(os.Stdout).Encode(s)
			json.NewEncoder(os.Stdout).Encode(refusedRecords(cfg.Metrics))
			break
		}
		select {
		case err := <-done:
			fmt.Fprintln(os.Stderr, "agent stopped:", err)
			os.Exit(1)
		case <-deadline:
			fmt.Fprintf(os.Stderr, "not ready with %d peers: %+v\n", c.Peers, s)
			os.Exit(1)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "clean stop:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// refusedRecords is weft_peer_records_refused by reason.
func refusedRecords(m *metrics.Metrics) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := m.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "weft_peer_records_refused" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = mt.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func TestStatusReportsLeasePathsAndReasons(t *testing.T) {
	e := newEnv(t, nil, []string{"a", "b"}, []string{"c"})
	e.start("b")
	e.start("c")
	e.waitReady("b")
	e.waitReady("c")

	// Two records no agent should trust: one named to sort first that
	// claims b's subnet, one that claims the underlay network. a refuses
	// both, says why, and b keeps its path.
	forged := []cluster.Node{
		{Name: "0-impostor", UnderlayIP: netip.MustParseAddr("172.30.1.77"), Subnet: e.state("b").Subnet,
			VTEPMAC: datapath.VTEPMAC(netip.MustParseAddr("172.30.1.77")).String()},
		{Name: "0-underlay", UnderlayIP: netip.MustParseAddr("172.30.1.78"), Subnet: netip.MustParsePrefix("172.30.1.0/24")},
	}
	for _, f := range forged {
		v, _ := json.Marshal(f)
		if _, err := e.etcdClient().Put(context.Background(), etcdstore.NodeKey(etcdstore.DefaultPrefix, f.Name), string(v)); err != nil {
			t.Fatal(err)
		}
	}
	n := e.topo.Nodes["a"]
	spec, err := json.Marshal(statusChild{Endpoint: e.etcd.Endpoint, Peers: 4,
		Node: "a", Backend: "auto", ClusterCIDR: cidr, UnderlayIP: n.IP,
		Dirs: names.Dirs{Data: e.dataDir("a"), Run: filepath.Join(e.dir, "a", "run"), CNIConf: e.confDir("a"), CNIBin: filepath.Join(e.dir, "a", "bin")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envStatusChild+"="+string(spec))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Start(netns.Path(n.NSName), cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var s agent.Status
	var refusedMetric map[string]float64
	dec := json.NewDecoder(out)
	decErr := errors.Join(dec.Decode(&s), dec.Decode(&refusedMetric))
	if err := cmd.Wait(); err != nil || decErr != nil {
		t.Fatalf("in-process agent: %v / %v\n%s", err, decErr, stderr.String())
	}

	if s.Node != "a" || s.Backend != "auto" || s.MTU != 1450 || s.UnderlayIP != n.IP || s.UnderlayLink != "eth0" {
		t.Errorf("status %+v", s)
	}
	if s.Lease == nil || !cidr.Contains(s.Lease.Subnet.Addr()) || time.Until(s.Lease.Expires) <= 0 {
		t.Errorf("lease %+v", s.Lease)
	}
	if s.VTEPMAC != datapath.VTEPMAC(n.IP).String() {
		t.Errorf("VTEP MAC %q, want %s", s.VTEPMAC, datapath.VTEPMAC(n.IP))
	}
	if s.StartTime.IsZero() || s.LastReconcile.Before(s.StartTime) || s.Reconciles == 0 || s.LastReconcileError != "" || s.DatastoreError != "" {
		t.Errorf("times/errors: %+v", s)
	}
	if s.Routes != 2 || s.Neighbours != 1 || s.FDB != 1 {
		t.Errorf("counts routes %d neigh %d fdb %d, want 2 1 1", s.Routes, s.Neighbours, s.FDB)
	}
	want := map[string]struct {
		path, reason string
		ip           netip.Addr
	}{
		"b": {datapath.PathDirect, "directly connected", e.topo.Nodes["b"].IP},
		"c": {datapath.PathVXLAN, "through gateway 172.30.1.254", e.topo.Nodes["c"].IP},
	}
	refused := map[string]string{"0-impostor": datapath.RefusedNotHeld, "0-underlay": datapath.RefusedOutsideCIDR}
	for _, p := range s.Peers {
		if r, ok := refused[p.Name]; ok {
			if p.Refused != r || p.Path != datapath.PathNone || p.Reason == "" {
				t.Errorf("forged record %+v: want refused %s with a reason", p, r)
			}
			continue
		}
		w := want[p.Name]
		if p.Path != w.path || !strings.Contains(p.Reason, w.reason) || p.UnderlayIP != w.ip || p.Subnet != e.state(p.Name).Subnet {
			t.Errorf("peer %+v, want path %s, reason about %q, underlay %s, subnet %s", p, w.path, w.reason, w.ip, e.state(p.Name).Subnet)
		}
	}
	if refusedMetric[datapath.RefusedNotHeld] != 1 || refusedMetric[datapath.RefusedOutsideCIDR] != 1 || refusedMetric[datapath.RefusedConflict] != 0 {
		t.Errorf("weft_peer_records_refused = %v, want one not held and one outside the cluster", refusedMetric)
	}
	b, _ := json.Marshal(s)
	for _, key := range []string{`"node"`, `"lease"`, `"vtepMAC"`, `"peers"`, `"path"`, `"reason"`, `"lastReconcile"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("status JSON lacks %s: %s", key, b)
		}
	}
}
