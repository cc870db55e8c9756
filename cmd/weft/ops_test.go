package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/preflight"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// opsAgent answers the local API like an agent with two peers, one of them
// cut off for a while.
type opsAgent struct{}

func (opsAgent) Status(context.Context) (agentapi.Status, error) {
	return agentapi.Status{
		Node: "wto-a", Subnet: netip.MustParsePrefix("10.244.1.0/24"), ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		Backend: "auto", MTU: 1450, Datastore: agentapi.Datastore{Kind: "etcd", Endpoint: "http://192.168.50.1:2379", Healthy: true,
			LastContact: time.Now().Add(-2 * time.Hour)},
		Peers: 2, Unreachable: 1, Pods: 3, AddressesUsed: 3, AddressesFree: 250, Version: "v9.9.9",
		StartedAt: time.Now().Add(-time.Hour), Degraded: []string{"peer wto-c unreachable for 2m0s"},
	}, nil
}

func (opsAgent) Policy(_ context.Context, ns, name string) (netpol.Explanation, error) {
	if ns != "x" || name != "a" {
		return netpol.Explanation{}, fmt.Errorf("no pod %s/%s in the cluster", ns, name)
	}
	return netpol.Explanation{Pod: "x/a", IP: netip.MustParseAddr("10.244.1.2"), Node: "n1", IsolatedIngress: true,
		Policies: []netpol.Explained{{Policy: "x/web", IsolatesIngress: true, Ingress: []string{"from pods {pod=b} of namespace x on TCP 80"}}}}, nil
}

func (opsAgent) Peers(context.Context) ([]agentapi.Peer, error) {
	return []agentapi.Peer{
		{Name: "wto-c", UnderlayIP: netip.MustParseAddr("192.168.51.3"), Subnet: netip.MustParsePrefix("10.244.3.0/24"),
			Path: "vxlan", PathReason: "different L2 segment", State: agentapi.Unreachable, Down: true,
			Since: time.Now().Add(-2 * time.Minute), LastError: "no reply from 10.244.3.1:9754 within 2s"},
		{Name: "wto-b", UnderlayIP: netip.MustParseAddr("192.168.50.2"), Subnet: netip.MustParsePrefix("10.244.2.0/24"),
			Path: "direct", PathReason: "same L2 segment", State: agentapi.Reachable, RTTMillis: 0.31, Since: time.Now()},
	}, nil
}

func weftBin(t *testing.T) string {
	t.Helper()
	p, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func serveAgent(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agentapi.Serve(ctx, dir, opsAgent{}) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", agentapi.SocketPath(dir)); err == nil {
			c.Close()
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatal("agent API never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStatusAndPeersCommands(t *testing.T) {
	bin, dir := weftBin(t), serveAgent(t)
	out, err := exec.Command(bin, "status", "--run-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("weft status: %v\n%s", err, out)
	}
	t.Logf("weft status:\n%s", out)
	for _, want := range []string{"wto-a", "10.244.1.0/24 (cluster 10.244.0.0/16)", "pod MTU 1450", "etcd http://192.168.50.1:2379, healthy (last contact 2h0m ago)",
		"2, 1 UNREACHABLE for longer", "3 used, 250 free", "v9.9.9, up 1h0m", "peer wto-c unreachable"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("weft status lacks %q:\n%s", want, out)
		}
	}

	out, err = exec.Command(bin, "peers", "--run-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("weft peers: %v\n%s", err, out)
	}
	t.Logf("weft peers:\n%s", out)
	lines := strings.Split(string(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "wto-b") || !strings.Contains(lines[1], "0.31ms") ||
		!strings.Contains(lines[2], "DOWN") || !strings.Contains(lines[2], "different L2 segment") {
		t.Errorf("weft peers rows:\n%s", out)
	}
	if !strings.Contains(string(out), "1 DOWN") || !strings.Contains(string(out), "no reply from 10.244.3.1:9754") {
		t.Errorf("weft peers does not count or explain the down peer:\n%s", out)
	}

	out, err = exec.Command(bin, "peers", "--run-dir", dir, "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ps []agentapi.Peer
	if err := json.Unmarshal(out, &ps); err != nil || len(ps) != 2 || ps[0].Name != "wto-c" || !ps[0].Down {
		t.Errorf("weft peers -o json: %v %+v", err, ps)
	}
}

// `weft policy NAMESPACE/POD` shows what the agent says of a pod's
// policies; an unknown pod is the agent's error, said by the command.
func TestPolicyCommand(t *testing.T) {
	bin, dir := weftBin(t), serveAgent(t)
	out, err := exec.Command(bin, "policy", "x/a", "--run-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("weft policy: %v\n%s", err, out)
	}
	for _, want := range []string{"pod x/a (10.244.1.2 on n1)", "ingress: isolated", "egress:  open", "x/web", "ingress: allows from pods {pod=b} of namespace x on TCP 80"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("weft policy lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin, "policy", "--run-dir", dir, "x/nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no pod x/nope") {
		t.Errorf("weft policy on an unknown pod: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "policy", "--run-dir", dir, "nonamespace").CombinedOutput(); err == nil || !strings.Contains(string(out), "NAMESPACE/POD") {
		t.Errorf("weft policy without a namespace: %v\n%s", err, out)
	}
}

func TestStatusWithoutAgentExplains(t *testing.T) {
	out, err := exec.Command(weftBin(t), "status", "--run-dir", t.TempDir()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "is the Weft agent running") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}

func opsNode(t *testing.T) (string, ns.NetNS) {
	t.Helper()
	n := testnet.NewNS(t, "ops")
	return n.Name, n
}

func TestPreflightCommandFailsOnTakenPort(t *testing.T) {
	name, n := opsNode(t)
	var l net.Listener
	if err := n.Do(func(ns.NetNS) (err error) { l, err = net.Listen("tcp4", "0.0.0.0:10250"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command("nsenter", "--net="+netns.Path(name), weftBin(t), "preflight", "--role", "worker", "-o", "json", "--cni-conf-dir", t.TempDir())
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("preflight with a taken port: err %v", err)
	}
	var rep preflight.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("parse %s: %v", out, err)
	}
	found := false
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, "port 10250/tcp") {
			found = c.Result == preflight.Fail && strings.Contains(c.Detail, fmt.Sprintf("pid %d", os.Getpid()))
		}
	}
	if !found {
		t.Errorf("10250 not reported as taken by this process: %+v", rep.Checks)
	}
}

func TestUninstallCommand(t *testing.T) {
	name, n := opsNode(t)
	if err := n.Do(func(ns.NetNS) error {
		_, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.244.1.1/24"), 1450)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	conf, bin, data, run := filepath.Join(root, "conf"), filepath.Join(root, "bin"), filepath.Join(root, "data"), serveAgent(t)
	for _, f := range []string{filepath.Join(conf, names.ConfListName), filepath.Join(bin, names.PluginType), filepath.Join(bin, names.PortmapType), filepath.Join(bin, "portmap"), filepath.Join(data, "node.json")} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uninstall := func(extra ...string) (string, error) {
		args := append([]string{"--net=" + netns.Path(name), weftBin(t), "uninstall",
			"--cni-conf-dir", conf, "--cni-bin-dir", bin, "--data-dir", data, "--run-dir", run}, extra...)
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		return string(out), err
	}
	// The agent still answers on the socket: uninstall refuses.
	if out, err := uninstall(); err == nil || !strings.Contains(out, "still running") {
		t.Fatalf("uninstall with a live agent: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(conf, names.ConfListName)); err != nil {
		t.Fatal("a refused uninstall removed files")
	}
	out, err := uninstall("--force")
	if err != nil || !strings.Contains(out, "removed bridge "+names.Bridge) {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if out, err := uninstall(); err != nil || !strings.Contains(out, "nothing of Weft's is left") {
		t.Fatalf("second uninstall: %v\n%s", err, out)
	}
	if err := n.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName(names.Bridge); err == nil {
			return errors.New("bridge still there")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{filepath.Join(conf, names.ConfListName), filepath.Join(bin, names.PluginType), filepath.Join(bin, names.PortmapType), data, run} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "portmap")); err != nil {
		t.Errorf("the node's portmap was removed: %v", err)
	}
}

func TestOnlyRootReadsTheAgent(t *testing.T) {
	testnet.RequireRoot(t, "runs weft as another user")
	bin, dir := weftBin(t), serveAgent(t)
	// Let anyone reach the directory, so that only the socket's own mode
	// keeps other users out; the binary too must be runnable by them.
	for _, p := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	nobodysBin := filepath.Join(dir, "weft")
	if err := os.WriteFile(nobodysBin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nobodysBin, "status", "--run-dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "root only") {
		t.Fatalf("weft status as nobody: err %v\n%s", err, out)
	}
}
