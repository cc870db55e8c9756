package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/testkit/labtest"
)

// Each backend gets one 3-node lab with 2 pods a node, shared by its
// subtests in this order: the matrix and the path each node chose for each
// peer; an etcd outage; a node joining (which also shows that the agents'
// watches came back after the outage); that node leaving; an agent killed
// with -9 under traffic; a peer's VTEP MAC changing.
func TestLabHostGW(t *testing.T)          { suite(t, cluster.BackendHostGW, 1) }
func TestLabVXLAN(t *testing.T)           { suite(t, cluster.BackendVXLAN, 1) }
func TestLabAutoTwoSegments(t *testing.T) { suite(t, cluster.BackendAuto, 2) }
func suite(t *testing.T, backend cluster.Backend, segments int) {
	l := labtest.Up(t, config(t, backend, segments, 3, 2))
	t.Run("matrix", func(t *testing.T) {
		fullMatrix(t, l)
		checkPaths(t, l)
	})
	t.Run("etcd-outage", func(t *testing.T) { etcdOutage(t, l) })
	var joined string
	t.Run("join", func(t *testing.T) {
		start := time.Now()
		n, err := l.JoinNode(context.Background(), 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		joined = n.Name
		datastoreReachable(t, l)
		t.Logf("node %s ready with a pod after %s", n.Name, time.Since(start).Round(time.Millisecond))
		fullMatrix(t, l)
		t.Logf("full matrix after %s", time.Since(start).Round(time.Millisecond))
		checkPaths(t, l)
	})
	t.Run("leave", func(t *testing.T) {
		if joined == "" {
			t.Skip("no node joined")
		}
		leave(t, l, joined)
	})
	t.Run("kill-9", func(t *testing.T) { kill9(t, l, "n1", "n2") })
	if segments == 1 {
		// With two segments the node's route to the other one is the
		// node's own configuration (the lab's static route), which the
		// kernel drops with the link and a real node's network manager
		// puts back; the lab has none, so only one segment is flapped.
		t.Run("underlay-flap", func(t *testing.T) { underlayFlap(t, l, "n1") })
	}
	if backend != cluster.BackendHostGW {
		t.Run("vtep-mac", func(t *testing.T) { vtepMACChange(t, l, "n2") })
	}
}

// expectedPath is how node a must reach node b with the lab's backend:
// auto takes a direct route inside a segment and VXLAN across segments.
func expectedPath(l *lab.Lab, a, b *lab.NodeState) string {
	switch l.Backend {
	case cluster.BackendHostGW:
		return "direct"
	case cluster.BackendVXLAN:
		return "vxlan"
	}
	if a.Segment == b.Segment {
		return "direct"
	}
	return "vxlan"
}

// checkPaths looks up, in every node's routing table, the route to every
// peer's subnet: a direct one goes via the peer's underlay address on
// eth0, a VXLAN one through weft.vxlan.
func checkPaths(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, a := range l.Nodes {
		k := labtest.Kernel(t, l, a.Name)
		for _, b := range l.Nodes {
			if a == b {
				continue
			}
			var want string
			switch expectedPath(l, a, b) {
			case "direct":
				want = fmt.Sprintf("route dst=%s gw=%s dev=eth0 ", b.Subnet, b.UnderlayIP)
			case "vxlan":
				want = fmt.Sprintf("route dst=%s gw=%s dev=weft.vxlan ", b.Subnet, vxlanAddr(b.Subnet))
			}
			found := false
			for _, line := range k.Lines {
				if strings.HasPrefix(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s → %s (segments %d→%d): no %q in:\n%s", a.Name, b.Name, a.Segment, b.Segment, want, strings.Join(k.Mentioning(b.Subnet.String()), "\n"))
			}
		}
	}
}

// stream pings to's pod from from's in the background.
func stream(t *testing.T, from, to *lab.PodState, count int, interval time.Duration) *lab.PingRun {
	t.Helper()
	p, err := lab.StartPing(context.Background(), from.Netns, to.IP, count, interval, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// etcdOutage stops the datastore for 30 s (labtest.DatastoreOutage: no
// echo lost, agents alive, kernel state unchanged, every agent ready
// again); then the agents follow the datastore again.
func etcdOutage(t *testing.T, l *lab.Lab) {
	back := labtest.DatastoreOutage(t, l)
	// The agents follow the datastore again: a peer record written now
	// is programmed by every node, and its removal too.
	peerAppearsEverywhere(t, l)
	t.Logf("after etcd returned, every agent followed a new peer record within %s", time.Since(back).Round(time.Millisecond))
}

// peerAppearsEverywhere writes the record of a peer that does not exist
// (an unused address on segment 1, a subnet no agent leases), waits until
// every node routes its subnet, then deletes it and waits until no node
// does. Only the agents' probes (and their ARP requests) go towards it,
// and they stay on the lab's underlay, where no namespace holds its
// address.
func peerAppearsEverywhere(t *testing.T, l *lab.Lab) {
	t.Helper()
	cli, err := l.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	ul := l.Nodes[0].UnderlayIP.As4()
	ul[3] = 200
	peer := cluster.Node{Name: "ghost", UnderlayIP: netip.AddrFrom4(ul), Subnet: netip.MustParsePrefix("10.244.200.0/24"),
		VTEPMAC: fmt.Sprintf("0e:76:%02x:%02x:%02x:%02x", ul[0], ul[1], ul[2], ul[3]), Backend: l.Backend}
	plant, err := etcdstore.PlantOps(etcdstore.DefaultPrefix, peer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(plant...).Commit(); err != nil {
		t.Fatalf("write peer record: %v", err)
	}
	routed := func(want bool) func() error {
		return func() error {
			for _, n := range l.Nodes {
				has := len(labtest.Kernel(t, l, n.Name).Mentioning(peer.Subnet.String())) > 0
				if has != want {
					return fmt.Errorf("node %s routes %s: %t", n.Name, peer.Subnet, has)
				}
			}
			return nil
		}
	}
	testnet.Eventually(t, 30*time.Second, "every node programs a new peer", routed(true))
	if _, err := cli.Txn(ctx).Then(etcdstore.RemoveOps(etcdstore.DefaultPrefix, peer.Name)...).Commit(); err != nil {
		t.Fatalf("delete peer record: %v", err)
	}
	testnet.Eventually(t, 30*time.Second, "every node forgets a removed peer", routed(false))
}

// leave removes a node and waits until no peer holds a route, neighbour
// or FDB entry for its subnet, underlay address or VTEP MAC.
func leave(t *testing.T, l *lab.Lab, node string) {
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	traces := []string{n.Subnet.String(), vxlanAddr(n.Subnet), n.UnderlayIP.String()}
	if l.Backend != cluster.BackendHostGW {
		traces = append(traces, vtepMAC(t, l, node))
	}
	var peers []string
	for _, p := range l.Nodes {
		if p.Name != node {
			peers = append(peers, p.Name)
			if len(labtest.Kernel(t, l, p.Name).Mentioning(traces...)) == 0 {
				t.Fatalf("peer %s holds nothing for %s before it leaves: the check below would prove nothing", p.Name, node)
			}
		}
	}
	// The operator's way out: `weft agent --cleanup` on the node. It
	// leaves nothing of Weft on the node and takes the node's record and
	// lease out of the datastore.
	if err := l.CleanupNode(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	k := labtest.Kernel(t, l, node)
	for _, line := range k.Lines {
		if strings.Contains(line, "weft") || strings.Contains(line, " proto=87 ") {
			t.Errorf("left on %s after cleanup: %s", node, line)
		}
	}
	if err := l.RemoveNode(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	datastoreReachable(t, l)
	for _, p := range peers {
		testnet.Eventually(t, 15*time.Second, "peer "+p+" forgets "+node, func() error {
			if left := labtest.Kernel(t, l, p).Mentioning(traces...); len(left) > 0 {
				return fmt.Errorf("still there:\n%s", strings.Join(left, "\n"))
			}
			return nil
		})
	}
	fullMatrix(t, l)
}

// kill9 kills node's agent with SIGKILL in the middle of a pod-to-pod
// stream into that node and restarts it: no echo is lost, and once the
// new agent is ready the node's kernel state is what it was. The stream
// runs until the new agent is ready and has carried traffic after it,
// however long the restart takes (up to a minute).
func kill9(t *testing.T, l *lab.Lab, from, node string) {
	before := labtest.Kernel(t, l, node)
	const most = 6000 // 60 s at 10 ms
	s := stream(t, labtest.PodOn(t, l, from), labtest.PodOn(t, l, node), most, 10*time.Millisecond)
	defer s.Stop()
	// The kill must land inside the stream, after traffic flows.
	testnet.Eventually(t, 30*time.Second, "the stream flows", func() error {
		if s.Received() < 20 {
			return fmt.Errorf("%d replies", s.Received())
		}
		return nil
	})
	if err := l.StopAgent(node, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := l.StartAgent(node); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitAgentReady(context.Background(), node, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("agent of %s killed and ready again in %s", node, time.Since(killed).Round(time.Millisecond))
	if d := before.Diff(labtest.Kernel(t, l, node)); d != "" {
		t.Errorf("kernel state of %s after the restart differs (- before, + after):\n%s", node, d)
	}
	// Traffic flows on after the restart: the stream spans it.
	after := s.Received()
	testnet.Eventually(t, 30*time.Second, "the stream flows after the restart", func() error {
		if s.Received() < after+20 {
			return fmt.Errorf("%d replies since the agent was ready", s.Received()-after)
		}
		return nil
	})
	s.Stop()
	r, err := s.Wait()
	if r.Sent == most {
		t.Errorf("the stream ended before the agent was back: the check proves nothing")
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost() != 0 {
		t.Errorf("%d of %d echoes lost across the agent's kill -9 and restart", r.Lost(), r.Sent)
	}
	if d := before.Diff(labtest.Kernel(t, l, node)); d != "" {
		t.Errorf("kernel state of %s after the stream differs (- before, + after):\n%s", node, d)
	}
}

// vtepMACChange: node's record in the datastore announces a VTEP MAC that
// its underlay address does not derive (its agent is down meanwhile): every
// peer refuses the record and keeps nothing for it, neither the forged MAC
// nor the old one, since a record pointing another node's MAC at itself
// would take that node's traffic. When the node's agent comes back and
// publishes its real MAC, every peer programs it again and the matrix is
// full.
func vtepMACChange(t *testing.T, l *lab.Lab, node string) {
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	real := vtepMAC(t, l, node)
	fake := "0e:77:de:ad:be:01"
	var peers []string
	for _, p := range l.Nodes {
		if p.Name != node && expectedPath(l, p, n) == "vxlan" {
			peers = append(peers, p.Name)
		}
	}
	if len(peers) == 0 {
		t.Fatalf("no peer reaches %s over VXLAN", node)
	}
	if err := l.StopAgent(node, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			l.StartAgent(node)
		}
	}()
	cli, err := l.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	key := etcdstore.NodeKey(etcdstore.DefaultPrefix, node)
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read %s: %v (%d keys)", key, err, len(resp.Kvs))
	}
	var rec cluster.Node
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.VTEPMAC != real {
		t.Fatalf("record of %s has VTEP MAC %s, its device %s", node, rec.VTEPMAC, real)
	}
	rec.VTEPMAC = fake
	b, _ := json.Marshal(rec)
	if _, err := cli.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
	follows := func(mac, old string) func(p string) func() error {
		return func(p string) func() error {
			return func() error {
				k := labtest.Kernel(t, l, p)
				neigh := fmt.Sprintf("neigh dev=weft.vxlan ip=%s lladdr=%s ", vxlanAddr(n.Subnet), mac)
				fdb := fmt.Sprintf("fdb dev=weft.vxlan mac=%s dst=%s ", mac, n.UnderlayIP)
				var have []string
				for _, line := range k.Lines {
					if strings.HasPrefix(line, neigh) || strings.HasPrefix(line, fdb) {
						have = append(have, line)
					}
				}
				if len(have) != 2 {
					return fmt.Errorf("want %q and %q, have:\n%s", neigh, fdb, strings.Join(k.Mentioning(n.UnderlayIP.String(), vxlanAddr(n.Subnet), mac, old), "\n"))
				}
				if stale := k.Mentioning(old); len(stale) > 0 {
					return fmt.Errorf("old MAC %s still there:\n%s", old, strings.Join(stale, "\n"))
				}
				return nil
			}
		}
	}
	refuses := func(p string) func() error {
		return func() error {
			if have := labtest.Kernel(t, l, p).Mentioning(fake, real); len(have) > 0 {
				return fmt.Errorf("entries for the forged record remain:\n%s", strings.Join(have, "\n"))
			}
			return nil
		}
	}
	for _, p := range peers {
		testnet.Eventually(t, 15*time.Second, p+" refuses "+node+"'s forged VTEP MAC", refuses(p))
	}
	if err := l.StartAgent(node); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := l.WaitAgentReady(ctx, node, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		testnet.Eventually(t, 15*time.Second, p+" follows "+node+"'s republished VTEP MAC", follows(real, fake)(p))
	}
	fullMatrix(t, l)
}

// TestLabCIDRExhausted: a /23 cluster CIDR holds two /24 subnets; the
// third node's agent cannot get one, and `lab up` fails with the agent's
// error, which tells the operator what to do, and removes the lab.
func TestLabCIDRExhausted(t *testing.T) {
	cfg := config(t, cluster.BackendAuto, 1, 3, 0)
	cfg.ClusterCIDR = netipPrefix("10.244.0.0/23")
	cfg.ReadyTimeout = 20 * time.Second
	labtest.RemoveAtEnd(t, cfg.Name)
	_, err := lab.Up(context.Background(), cfg)
	if err == nil {
		t.Fatal("lab up with 3 nodes in a /23 of /24 subnets succeeded")
	}
	t.Logf("lab up: %v", err)
	if !strings.Contains(err.Error(), store.ErrCIDRExhausted.Error()) {
		t.Errorf("error does not say the cluster CIDR ran out (%q): %v", store.ErrCIDRExhausted, err)
	}
	if lab.Exists(cfg.Name) {
		t.Errorf("failed lab up left lab %s behind", cfg.Name)
	}
}
