package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// pod makes a pod behind node's bridge at the node subnet's .10.
func (e *env) pod(node string) *testnet.Node {
	st := e.state(node)
	ip := st.Subnet.Addr().Next().Next()
	for range 8 {
		ip = ip.Next()
	}
	return e.topo.AddPod(e.t, e.topo.Nodes[node], "p"+node, netip.PrefixFrom(ip, st.Subnet.Bits()), st.Gateway().Addr(), names.Bridge)
}

func echo(t *testing.T, from, to *testnet.Node) {
	t.Helper()
	if err := testnet.Echo(from, from.IP, to, to.IP); err != nil {
		t.Fatal(err)
	}
}

// The agents of three nodes, two on one segment and one behind a router,
// connect their pods (direct routes on the segment, VXLAN across); an
// agent killed with -9 and restarted changes nothing and loses no packet;
// an etcd outage changes nothing; a peer that left while an agent was down
// is removed by that agent when it comes back.
func TestAgentsConnectPodsAndRestartsDisturbNothing(t *testing.T) {
	e := newEnv(t, nil, []string{"a", "b"}, []string{"c"})
	for _, n := range []string{"a", "b", "c"} {
		e.start(n)
	}
	for _, n := range []string{"a", "b", "c"} {
		e.waitReady(n)
	}
	sa, sb, sc := e.state("a"), e.state("b"), e.state("c")
	if sa.Subnet == sb.Subnet || sb.Subnet == sc.Subnet || sa.Subnet == sc.Subnet {
		t.Fatalf("subnets %s %s %s are not distinct", sa.Subnet, sb.Subnet, sc.Subnet)
	}
	for _, s := range []nodestate.State{sa, sb, sc} {
		if s.MTU != 1450 || s.Bridge != names.Bridge || s.ClusterCIDR != cidr || s.Backend != "auto" {
			t.Fatalf("node state %+v: want MTU 1450 (1500 less VXLAN), bridge weft0, cluster CIDR, backend auto", s)
		}
	}
	if _, err := os.Stat(cniconf.Path(e.confDir("a"))); err != nil {
		t.Fatalf("no CNI config: %v", err)
	}
	if code, _, err := get(e.topo.Nodes["a"], "/healthz"); err != nil || code != 200 {
		t.Fatalf("/healthz = %d, %v", code, err)
	}

	// Every node programs every peer once the watch delivers it.
	testnet.Eventually(t, 20*time.Second, "a routes b directly and c over VXLAN", func() error {
		k := kernelState(t, e.topo.Nodes["a"])
		rb, rc := routeTo(k, sb.Subnet), routeTo(k, sc.Subnet)
		if !strings.Contains(rb, "via 172.30.1.2 ") || !strings.Contains(rc, fmt.Sprintf("via %s ", sc.Subnet.Addr())) || len(k.fdb) != 1 {
			return fmt.Errorf("node a: %s", k)
		}
		return nil
	})
	testnet.Eventually(t, 20*time.Second, "c reaches a and b over VXLAN", func() error {
		k := kernelState(t, e.topo.Nodes["c"])
		if len(k.routes) != 2 || len(k.neighs) != 2 || len(k.fdb) != 2 {
			return fmt.Errorf("node c: %s", k)
		}
		return nil
	})
	pa, pb, pc := e.pod("a"), e.pod("b"), e.pod("c")
	echo(t, pa, pb)
	echo(t, pa, pc)
	echo(t, pc, pb)
	echo(t, pb, pa)

	// kill -9 and restart a, with a pod-to-pod stream over VXLAN running.
	before := kernelState(t, e.topo.Nodes["a"])
	stop := make(chan struct{})
	type counts struct{ sent, got int }
	res := make(chan counts)
	go func() { s, g := stream(t, pa, pa.IP, pc, pc.IP, stop); res <- counts{s, g} }()
	time.Sleep(200 * time.Millisecond)
	e.agents["a"].stop(t, syscall.SIGKILL)
	restarted := time.Now()
	e.start("a")
	e.waitReady("a")
	t.Logf("agent of a ready %s after its restart", time.Since(restarted).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	close(stop)
	r := <-res
	if r.sent < 40 || r.got != r.sent {
		t.Fatalf("stream across kill -9 and restart: %d sent, %d answered (want all)", r.sent, r.got)
	}
	t.Logf("stream across kill -9 + restart of a's agent: %d datagrams sent, %d lost", r.sent, r.sent-r.got)
	if after := kernelState(t, e.topo.Nodes["a"]); after.String() != before.String() {
		t.Fatalf("restart changed node a's kernel state:\nbefore %s\nafter  %s", before, after)
	}

	// etcd stopped: pods keep talking, agents keep running and healthy.
	e.etcd.Stop()
	time.Sleep(3 * time.Second)
	echo(t, pa, pc)
	echo(t, pb, pa)
	for _, n := range []string{"a", "b", "c"} {
		select {
		case <-e.agents[n].done:
			t.Fatalf("agent of %s exited during the etcd outage: %v", n, e.agents[n].err)
		default:
		}
		if code, body, err := get(e.topo.Nodes[n], "/healthz"); err != nil || code != 200 {
			t.Fatalf("/healthz of %s during the outage = %d %q, %v", n, code, body, err)
		}
	}
	// An agent restarted while etcd is down cannot lease; it waits, not
	// ready but alive, and touches nothing.
	e.agents["a"].stop(t, syscall.SIGKILL)
	e.start("a")
	testnet.Eventually(t, 10*time.Second, "restarted a alive but not ready", func() error {
		code, body, err := get(e.topo.Nodes["a"], "/readyz")
		if err != nil || code != 503 || !strings.Contains(body, "no subnet lease") {
			return fmt.Errorf("/readyz = %d %q, %v", code, body, err)
		}
		if code, _, err := get(e.topo.Nodes["a"], "/healthz"); err != nil || code != 200 {
			return fmt.Errorf("/healthz = %d, %v", code, err)
		}
		return nil
	})
	echo(t, pa, pc)
	if after := kernelState(t, e.topo.Nodes["a"]); after.String() != before.String() {
		t.Fatalf("the etcd outage changed node a's kernel state:\nbefore %s\nafter  %s", before, after)
	}
	e.etcd.Restart(t)
	e.waitReady("a")
	if after := kernelState(t, e.topo.Nodes["a"]); after.String() != before.String() {
		t.Fatalf("a's agent, ready after the outage, changed its kernel state:\nbefore %s\nafter  %s", before, after)
	}

	// b stops cleanly (its datapath stays); c leaves the cluster meanwhile.
	e.agents["b"].stop(t, syscall.SIGTERM)
	if k := kernelState(t, e.topo.Nodes["b"]); routeTo(k, sc.Subnet) == "" {
		t.Fatalf("a clean stop removed b's datapath: %s", k)
	}
	e.agents["c"].stop(t, syscall.SIGTERM)
	cl := e.start("c", "--cleanup")
	select {
	case <-cl.done:
		if cl.err != nil {
			b, _ := os.ReadFile(cl.log)
			t.Fatalf("weft agent --cleanup: %v\n%s", cl.err, b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("weft agent --cleanup did not finish")
	}
	assertClean(t, e, "c")
	// a's watch came back after the outage: it drops every trace of c.
	testnet.Eventually(t, 20*time.Second, "a drops c", func() error {
		if k := kernelState(t, e.topo.Nodes["a"]); len(k.routes) != 1 || len(k.neighs) != 0 || len(k.fdb) != 0 {
			return fmt.Errorf("node a: %s", k)
		}
		return nil
	})
	// b missed c leaving: on start it removes what is stale.
	if k := kernelState(t, e.topo.Nodes["b"]); routeTo(k, sc.Subnet) == "" {
		t.Fatalf("b lost its route to c while stopped: %s", k)
	}
	e.start("b")
	e.waitReady("b")
	if k := kernelState(t, e.topo.Nodes["b"]); len(k.routes) != 1 || len(k.neighs) != 0 || len(k.fdb) != 0 {
		t.Fatalf("restarted b still holds traces of c: %s", k)
	}
	echo(t, pa, pb)
}

// assertClean checks that nothing Weft makes is left on node.
func assertClean(t *testing.T, e *env, node string) {
	t.Helper()
	n := e.topo.Nodes[node]
	n.Do(t, func() error {
		for _, l := range []string{names.Bridge, names.VXLANDevice} {
			if _, err := netlink.LinkByName(l); err == nil {
				return fmt.Errorf("%s is still there", l)
			}
		}
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil || len(rs) != 0 {
			return fmt.Errorf("Weft routes left: %v %v", rs, err)
		}
		if ok, err := firewall.InSync(cidr); err != nil || ok {
			return fmt.Errorf("nftables table still there (%v)", err)
		}
		return nil
	})
	for _, f := range []string{cniconf.Path(e.confDir(node)), nodestate.Path(e.dataDir(node))} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("%s still there (%v)", f, err)
		}
	}
}

// assertRefused starts node's agent with flags and checks that it exits
// non-zero within 20 s, its log saying want.
func (e *env) assertRefused(t *testing.T, node, want string, flags ...string) {
	t.Helper()
	p := e.start(node, flags...)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("agent with %v keeps running", flags)
	}
	b, _ := os.ReadFile(p.log)
	if p.err == nil || !strings.Contains(string(b), want) {
		t.Errorf("agent with %v: exit %v, want an error about %q; said:\n%s", flags, p.err, want, b)
	}
}

// assertNoKeys checks that nothing of Weft's is in etcd: no lease taken,
// no record published.
func assertNoKeys(t *testing.T, e *env) {
	t.Helper()
	resp, err := e.etcdClient().Get(context.Background(), "/weft/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count Weft's keys in etcd: %v", err)
	}
	if resp.Count != 0 {
		t.Fatalf("refused agents left %d keys in etcd", resp.Count)
	}
}

// A cluster CIDR with room for two subnets: the third agent exits with an
// error an operator understands, and leaves nothing behind.
func TestExhaustedCIDRIsAClearFatalError(t *testing.T) {
	e := newEnv(t, []string{"--cluster-cidr", "10.244.0.0/23"}, []string{"a", "b", "c"})
	e.start("a")
	e.start("b")
	e.waitReady("a")
	e.waitReady("b")
	p := e.start("c")
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent of c keeps running with no subnet left")
	}
	if p.err == nil {
		t.Fatal("agent of c exited 0 with no subnet left")
	}
	b, _ := os.ReadFile(p.log)
	for _, want := range []string{"no free subnet left", "10.244.0.0/23", "c"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("agent log does not say %q:\n%s", want, b)
		}
	}
	t.Logf("agent of c said:\n%s", b)
	n := e.topo.Nodes["c"]
	n.Do(t, func() error {
		if _, err := netlink.LinkByName(names.Bridge); err == nil {
			return fmt.Errorf("the failed agent made %s", names.Bridge)
		}
		return nil
	})
}

// host-gw between nodes on one segment; vxlan forced between the same
// nodes: both carry pod traffic.
func TestForcedBackends(t *testing.T) {
	for _, backend := range []string{"host-gw", "vxlan"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, []string{"--backend", backend}, []string{"a", "b"})
			e.start("a")
			e.start("b")
			e.waitReady("a")
			e.waitReady("b")
			wantMTU := 1500
			if backend == "vxlan" {
				wantMTU = 1450
			}
			if s := e.state("a"); s.MTU != wantMTU {
				t.Fatalf("%s node MTU %d, want %d", backend, s.MTU, wantMTU)
			}
			sb := e.state("b")
			testnet.Eventually(t, 20*time.Second, "a programs b", func() error {
				k := kernelState(t, e.topo.Nodes["a"])
				r := routeTo(k, sb.Subnet)
				switch {
				case backend == "host-gw" && (!strings.Contains(r, "via 172.30.1.2 ") || k.vxIdx != 0):
					return fmt.Errorf("node a: %s", k)
				case backend == "vxlan" && (!strings.Contains(r, fmt.Sprintf("via %s ", sb.Subnet.Addr())) || len(k.fdb) != 1):
					return fmt.Errorf("node a: %s", k)
				}
				return nil
			})
			echo(t, e.pod("a"), e.pod("b"))
		})
	}
}

// etcdClient is a client whose connections are made inside the router
// namespace, where etcd listens.
func (e *env) etcdClient() *clientv3.Client {
	e.t.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := e.topo.Router.Do(func(ns.NetNS) error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", strings.TrimPrefix(addr, "http://"))
			return err
		})
		return c, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcd.Endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// A node whose lease lapsed while another running node claimed its subnet
// must stop: its pods' addresses now belong to someone else. The agent
// exits with an error that says so.
func TestLeaseLostToAnotherNodeIsFatal(t *testing.T) {
	e := newEnv(t, []string{"--lease-ttl", "6s"}, []string{"a"})
	p := e.start("a")
	e.waitReady("a")
	sa := e.state("a")
	cli := e.etcdClient()
	ctx := context.Background()
	// "intruder" runs and claims a's subnet: a, running since before, keeps
	// it. Then a's etcd lease lapses: the intruder is the only running
	// claimant, and a, back at its next renewal, came back after it.
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.Txn(ctx).Then(
		clientv3.OpPut(etcdstore.AliveKey(etcdstore.DefaultPrefix, "intruder"), "", clientv3.WithLease(g.ID)),
		clientv3.OpPut(etcdstore.SubnetClaimKey(etcdstore.DefaultPrefix, "intruder"), sa.Subnet.String()),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, etcdstore.AliveKey(etcdstore.DefaultPrefix, "a"))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("alive key of a: %v %+v", err, resp)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("agent of a keeps running on a subnet another node holds")
	}
	b, _ := os.ReadFile(p.log)
	if p.err == nil || !strings.Contains(string(b), "lost its subnet "+sa.Subnet.String()) || !strings.Contains(string(b), "intruder") {
		t.Fatalf("agent exit %v; log:\n%s", p.err, b)
	}
}

// What someone removes behind the agent's back comes back at the next
// resync: a route, an FDB entry, the nftables table, the CNI config.
func TestAgentRepairsDrift(t *testing.T) {
	e := newEnv(t, []string{"--backend", "vxlan", "--resync", "1s"}, []string{"a", "b"})
	e.start("a")
	e.start("b")
	e.waitReady("a")
	e.waitReady("b")
	n := e.topo.Nodes["a"]
	var want snapshot
	testnet.Eventually(t, 20*time.Second, "a programs b", func() error {
		want = kernelState(t, n)
		if len(want.routes) != 1 || len(want.fdb) != 1 || len(want.neighs) != 1 {
			return fmt.Errorf("node a: %s", want)
		}
		return nil
	})
	n.Do(t, func() error {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("routes %v %v", rs, err)
		}
		if err := netlink.RouteDel(&rs[0]); err != nil {
			return err
		}
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		fdb, err := netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, f := range fdb {
			if f.LinkIndex == vx.Attrs().Index {
				if err := netlink.NeighDel(&f); err != nil {
					return err
				}
			}
		}
		_, err = firewall.Remove()
		return err
	})
	if err := os.Remove(cniconf.Path(e.confDir("a"))); err != nil {
		t.Fatal(err)
	}
	if k := kernelState(t, n); len(k.routes) != 0 || len(k.fdb) != 0 {
		t.Fatalf("drift not made: %s", k)
	}
	testnet.Eventually(t, 20*time.Second, "a repairs its datapath and setup", func() error {
		if k := kernelState(t, n); k.String() != want.String() {
			return fmt.Errorf("node a: %s, want %s", k, want)
		}
		if _, err := os.Stat(cniconf.Path(e.confDir("a"))); err != nil {
			return err
		}
		var ok bool
		err := n.NS.Do(func(ns.NetNS) (err error) { ok, err = firewall.InSync(cidr); return })
		if err != nil || !ok {
			return fmt.Errorf("nftables table in sync: %v %v", ok, err)
		}
		return nil
	})
	echo(t, e.pod("a"), e.pod("b"))
}

// Bad configuration: the agent exits non-zero with a message naming the
// problem, leaves nothing on the node and takes no lease.
func TestBadAgentFlagsAreClearErrors(t *testing.T) {
	e := newEnv(t, nil, []string{"a"})
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--backend", "ipip"}, `unknown backend "ipip"`},
		{[]string{"--cluster-cidr", "10.244.0.0"}, "--cluster-cidr"},
		{[]string{"--lease-ttl", "1s"}, "lease TTL 1s is too short"},
		{[]string{"--subnet-len", "8"}, "subnet length /8"},
		{[]string{"--underlay-ip", "172.30.9.9"}, "172.30.9.9 is not on any interface"},
		{[]string{"--datastore", "zookeeper"}, `unknown datastore "zookeeper"`},
	} {
		e.assertRefused(t, "a", tc.want, tc.flags...)
	}
	assertClean(t, e, "a")
	assertNoKeys(t, e)
}
