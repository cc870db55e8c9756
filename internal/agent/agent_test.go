package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
	"github.com/weftnet/weft/internal/testkit/kernelstate"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

func TestMain(m *testing.M) {
	etcdtest.ServeIfAsked()
	statusChildIfAsked()
	os.Exit(m.Run())
}

var cidr = netip.MustParsePrefix("10.244.0.0/16")

// env is a test network with etcd in its router namespace.
type env struct {
	t      testing.TB
	topo   *testnet.Topo
	etcd   *etcdtest.Proc
	bin    string
	dir    string
	extra  []string // flags every agent gets
	agents map[string]*agentProc
}

type agentProc struct {
	node *testnet.Node
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func newEnv(t testing.TB, extra []string, segments ...[]string) *env {
	t.Helper()
	testnet.RequireRoot(t)
	bin, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	topo := testnet.NewTopo(t, "ag", segments...)
	e := &env{t: t, topo: topo, bin: bin, dir: t.TempDir(), extra: extra, agents: map[string]*agentProc{}}
	e.etcd = etcdtest.StartIn(t, topo.Router.Path(), netip.MustParseAddr("172.30.1.254"))
	return e
}

func (e *env) dataDir(node string) string { return filepath.Join(e.dir, node, "data") }
func (e *env) confDir(node string) string { return filepath.Join(e.dir, node, "conf") }

func (e *env) args(node string, more ...string) []string {
	n := e.topo.Nodes[node]
	d := filepath.Join(e.dir, node)
	a := []string{"agent", "--node-name", node, "--datastore", "etcd", "--etcd-endpoints", e.etcd.Endpoint,
		"--cluster-cidr", cidr.String(), "--subnet-len", "24", "--lease-ttl", "60s",
		"--data-dir", e.dataDir(node), "--run-dir", filepath.Join(d, "run"), "--cni-conf-dir", e.confDir(node),
		"--cni-bin-dir", filepath.Join(d, "bin"), "--health-addr", "127.0.0.1:9753", "--log-level", "debug"}
	if n.Segment == 0 { // segment 1 nodes are told their address; others detect it
		a = append(a, "--underlay-ip", n.IP.String())
	}
	return append(append(a, e.extra...), more...)
}

// start runs `weft agent` in node's namespace, as the lab and a DaemonSet do.
func (e *env) start(node string, more ...string) *agentProc {
	e.t.Helper()
	n := e.topo.Nodes[node]
	os.MkdirAll(filepath.Join(e.dir, node), 0o755)
	p := &agentProc{node: n, log: filepath.Join(e.dir, node, fmt.Sprintf("agent-%d.log", time.Now().UnixNano())), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(e.bin, e.args(node, more...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := netns.Start(netns.Path(n.NSName), p.cmd); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	e.agents[node] = p
	e.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if e.t.Failed() || testing.Verbose() {
			b, _ := os.ReadFile(p.log)
			e.t.Logf("log of agent %s:\n%s", node, b)
		}
	})
	return p
}

func (p *agentProc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("agent of %s did not exit on %s", p.node.Name, sig)
	}
}

// get does an HTTP GET of the agent's health endpoint from inside its node.
func get(n *testnet.Node, path string) (int, string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.NS.Do(func(ns.NetNS) error {
			var err error
			c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://127.0.0.1:9753" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	k, _ := resp.Body.Read(buf)
	b.Write(buf[:k])
	return resp.StatusCode, b.String(), nil
}

func (e *env) waitReady(node string) {
	e.t.Helper()
	p := e.agents[node]
	testnet.Eventually(e.t, 30*time.Second, "agent of "+node+" ready", func() error {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			e.t.Fatalf("agent of %s exited: %v\n%s", node, p.err, b)
		default:
		}
		code, body, err := get(p.node, "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	})
}

func (e *env) state(node string) nodestate.State {
	s, err := nodestate.Read(e.dataDir(node))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// snapshot is the Weft state of a node's kernel, for before/after checks:
// the shared snapshot (testnet.Kernel) cut down to what Weft programs.
type snapshot struct {
	routes, neighs, fdb []string
	bridgeIdx, vxIdx    int
}

func kernelState(t testing.TB, n *testnet.Node) snapshot {
	t.Helper()
	var s snapshot
	k := testnet.Kernel(t, n.Path())
	f := kernelstate.Field
	for _, l := range k.Of("route") {
		if f(l, "proto") == strconv.Itoa(names.RouteProtocol) {
			s.routes = append(s.routes, fmt.Sprintf("%s via %s dev %s onlink=%s", f(l, "dst"), f(l, "gw"), f(l, "dev"), f(l, "onlink")))
		}
	}
	for _, l := range k.Of("link") {
		switch f(l, "name") {
		case names.Bridge:
			s.bridgeIdx, _ = strconv.Atoi(f(l, "index"))
		case names.VXLANDevice:
			s.vxIdx, _ = strconv.Atoi(f(l, "index"))
		}
	}
	for _, l := range k.Of("neigh") {
		if f(l, "dev") == names.VXLANDevice {
			s.neighs = append(s.neighs, f(l, "ip")+" "+f(l, "lladdr"))
		}
	}
	for _, l := range k.Of("fdb") {
		if f(l, "dev") == names.VXLANDevice {
			s.fdb = append(s.fdb, f(l, "mac")+" "+f(l, "dst"))
		}
	}
	return s
}

func (s snapshot) String() string {
	return fmt.Sprintf("routes %v neigh %v fdb %v bridge if%d vxlan if%d", s.routes, s.neighs, s.fdb, s.bridgeIdx, s.vxIdx)
}

func routeTo(s snapshot, subnet netip.Prefix) string {
	for _, r := range s.routes {
		if strings.HasPrefix(r, subnet.String()+" ") {
			return r
		}
	}
	return ""
}

// stream sends numbered UDP datagrams from src to dst every 5 ms until
// stop is closed (at most 4000), and returns how many were sent and how
// many came back.
func stream(t testing.TB, from *testnet.Node, src netip.Addr, to *testnet.Node, dst netip.Addr, stop <-chan struct{}) (sent, got int) {
	var lc, out *net.UDPConn
	to.Do(t, func() (err error) { lc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst.AsSlice()}); return })
	defer lc.Close()
	from.Do(t, func() (err error) {
		out, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, lc.LocalAddr().(*net.UDPAddr))
		return
	})
	defer out.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, peer, err := lc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			lc.WriteToUDP(buf[:n], peer)
		}
	}()
	var mu sync.Mutex
	seen := map[string]bool{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64)
		for {
			n, err := out.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return
				}
				continue // an ICMP error surfaced on the socket
			}
			mu.Lock()
			seen[string(buf[:n])] = true
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
loop:
	for sent < 4000 {
		select {
		case <-stop:
			break loop
		case <-tick.C:
			out.Write([]byte(fmt.Sprintf("wta-%d", sent)))
			sent++
		}
	}
	out.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	return sent, len(seen)
}
