package ops_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/preflight"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

// One 3-node lab (backend auto, one segment, one pod a node) carries every
// case, in this order; each puts back what it broke, except uninstall,
// which comes last.
func TestOperatorCommandsOnALab(t *testing.T) {
	l := up(t, cluster.BackendAuto, 3)
	t.Run("status", func(t *testing.T) { statusOfNode(t, l) })
	t.Run("doctor-healthy", func(t *testing.T) { doctorHealthy(t, l) })
	t.Run("mtu-black-hole", func(t *testing.T) { mtuBlackHole(t, l) })
	t.Run("peer-cut-off", func(t *testing.T) { peerCutOff(t, l) })
	t.Run("leaked-address", func(t *testing.T) { leakedAddress(t, l) })
	t.Run("preflight", func(t *testing.T) { preflightPorts(t, l) })
	t.Run("uninstall", func(t *testing.T) { uninstallNode(t, l, "n3") })
}

// `weft status` on a node reports what the agent holds: its lease (the
// subnet the plugin uses), its peers and the datastore it talks to.
func statusOfNode(t *testing.T, l *lab.Lab) {
	n, err := l.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	out, err := weftOn(t, l, "n1", "status", "-o", "json")
	if err != nil {
		t.Fatalf("weft status: %v", err)
	}
	var st agentapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("weft status -o json: %v\n%s", err, out)
	}
	if st.Node != "n1" || st.Subnet != n.Subnet || st.Peers != 2 {
		t.Errorf("status: node %q subnet %s peers %d, want n1 %s 2", st.Node, st.Subnet, st.Peers, n.Subnet)
	}
	ds := st.Datastore
	if ds.Kind != "etcd" || ds.Endpoint == "" || ds.Endpoint != l.State.Datastore.Endpoint || !ds.Healthy || ds.LastContact.IsZero() {
		t.Errorf("status datastore %+v, want etcd at %s, healthy, with a last contact", ds, l.State.Datastore.Endpoint)
	}
	if st.Pods < 1 || st.AddressesUsed != st.Pods || st.AddressesFree < 1 {
		t.Errorf("status pods %d, addresses used %d free %d", st.Pods, st.AddressesUsed, st.AddressesFree)
	}
}

// A healthy node: every check passes and doctor exits 0. It runs with no
// directory flags, as an operator types it: the lab's node directories are
// not Weft's standard ones, so the IPAM and CNI checks pass only if doctor
// looks where the agent reports it works.
func doctorHealthy(t *testing.T, l *lab.Lab) {
	waitReachable(t, l, "n1", "n2", "n3")
	rep, ok := runDoctorArgs(t, l, "n1")
	if !ok || len(notOK(rep)) > 0 {
		t.Fatalf("doctor on a healthy lab (exit ok=%v): %s", ok, show(rep))
	}
	for _, peer := range []string{"n2", "n3"} {
		finding(t, rep, "reachability", peer)
		finding(t, rep, "path MTU", peer)
	}
	finding(t, rep, "datapath", "")
	finding(t, rep, "IPAM", "")
	finding(t, rep, "CNI STATUS", "")
}

// The underlay port of n2 carries only 1400 bytes and drops bigger frames
// without a word: small probes pass, the pod MTU (1450) does not, and
// doctor on n1 says so for n2 only, with the size that gets through.
func mtuBlackHole(t *testing.T, l *lab.Lab) {
	setLink(t, l.Underlay, "n2", func(k netlink.Link) error { return netlink.LinkSetMTU(k, 1400) })
	defer setLink(t, l.Underlay, "n2", func(k netlink.Link) error { return netlink.LinkSetMTU(k, 1500) })

	rep, ok := runDoctor(t, l, "n1")
	if ok {
		t.Errorf("doctor exited 0 with an MTU black hole")
	}
	f := finding(t, rep, "path MTU", "n2")
	if f.Result != doctor.Fail || !strings.Contains(f.Detail, "MTU black hole") || !strings.Contains(f.Detail, fmt.Sprint(rep.MTU)) || f.Fix == "" {
		t.Errorf("path MTU to n2 across a 1400-byte port: %+v", f)
	}
	// 1400 bytes fit the port; a probe lost twice on the way may make
	// the bisection settle a little lower, never higher.
	if m := largestRE.FindStringSubmatch(f.Detail); m == nil {
		t.Errorf("path MTU to n2 does not say what gets through: %s", f.Detail)
	} else if n, _ := strconv.Atoi(m[1]); n > 1400 || n < 1300 {
		t.Errorf("largest packet through a 1400-byte port reported as %d bytes: %s", n, f.Detail)
	}
	t.Logf("doctor: %s\n  fix: %s", f.Detail, f.Fix)
	if r := finding(t, rep, "reachability", "n2"); r.Result != doctor.OK {
		t.Errorf("small probes to n2 should pass: %+v", r)
	}
	if f := finding(t, rep, "path MTU", "n3"); f.Result != doctor.OK {
		t.Errorf("path MTU to n3, whose port is untouched: %+v", f)
	}
}

var largestRE = regexp.MustCompile(`the largest that gets through is (\d+) bytes`)

// n2's underlay link goes down: n1's agent reports n2 unreachable in
// `weft peers`, and doctor fails n2's reachability but not n3's.
func peerCutOff(t *testing.T, l *lab.Lab) {
	want := func(state string) func() error {
		return func() error {
			p, err := peerState(t, l, "n1", "n2")
			if err == nil && p.State != state {
				err = fmt.Errorf("n2 is %s (%s)", p.State, p.LastError)
			}
			return err
		}
	}
	testnet.Eventually(t, 15*time.Second, "n2 reachable before the cut", want(agentapi.Reachable))

	setLink(t, l.Underlay, "n2", netlink.LinkSetDown)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			setLink(t, l.Underlay, "n2", netlink.LinkSetUp)
		}
	}
	defer restore()
	testnet.Eventually(t, 15*time.Second, "weft peers on n1 showing n2 unreachable", want(agentapi.Unreachable))
	out, _ := weftOn(t, l, "n1", "peers")
	if !strings.Contains(out, "UNREACHABLE") {
		t.Errorf("weft peers does not show the cut-off peer:\n%s", out)
	}
	t.Logf("weft peers:\n%s", out)

	rep, ok := runDoctor(t, l, "n1")
	if ok {
		t.Errorf("doctor exited 0 with a peer cut off")
	}
	if f := finding(t, rep, "reachability", "n2"); f.Result != doctor.Fail || !strings.Contains(f.Detail, "unreachable") || f.Fix == "" {
		t.Errorf("reachability of the cut-off n2: %+v", f)
	}
	if f := finding(t, rep, "reachability", "n3"); f.Result != doctor.OK {
		t.Errorf("reachability of n3: %+v", f)
	}

	restore()
	testnet.Eventually(t, 20*time.Second, "n2 reachable again", want(agentapi.Reachable))
}

// A pod's container goes without a CNI DEL (its namespace, and with it
// the veth pair, is removed): doctor reports its address as leaked, and
// `doctor --release-leaks` gives it back through the plugin's DEL.
func leakedAddress(t *testing.T, l *lab.Lab) {
	n, err := l.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	pod := n.Pods[0]
	if err := netns.Delete(pod.Netns); err != nil {
		t.Fatal(err)
	}
	// The lab's leases are minutes old at most, younger than doctor's
	// default grace for an ADD that may still be running: ask for none.
	var leak doctor.Finding
	testnet.Eventually(t, 15*time.Second, "doctor reporting the leak", func() error {
		rep, _ := runDoctor(t, l, "n1", "--leak-grace", "1ms")
		for _, f := range rep.Findings {
			if f.Check == "IPAM" && f.Result == doctor.Fail && strings.Contains(f.Detail, pod.IP.String()) {
				leak = f
				return nil
			}
		}
		return fmt.Errorf("no leak reported: %s", show(rep))
	})
	if !strings.Contains(leak.Detail, pod.ContainerID) || !strings.Contains(leak.Fix, "--release-leaks") {
		t.Errorf("leak finding: %+v", leak)
	}
	t.Logf("doctor: %s\n  fix: %s", leak.Detail, leak.Fix)

	out, err := weftOn(t, l, "n1", append([]string{"doctor", "--release-leaks", "--leak-grace", "1ms", "-o", "json"}, nodeDirs(t, l, "n1")...)...)
	if err != nil {
		t.Fatalf("release leaks: %v\n%s", err, out)
	}
	var released []doctor.Released
	if err := json.Unmarshal([]byte(out), &released); err != nil {
		t.Fatal(err)
	}
	if len(released) != 1 || released[0].Addr != pod.IP || released[0].ContainerID != pod.ContainerID {
		t.Errorf("released %+v, want %s of %s", released, pod.IP, pod.ContainerID)
	}
	rep, _ := runDoctor(t, l, "n1", "--leak-grace", "1ms")
	if f := finding(t, rep, "IPAM", ""); f.Result != doctor.OK {
		t.Errorf("IPAM after releasing the leak: %+v", f)
	}
}

// A node about to join (a lab node without an agent): preflight passes
// kubelet's port and Weft's VXLAN port, then fails the first once a
// process listens on it and the second once an nftables rule drops it.
func preflightPorts(t *testing.T, l *lab.Lab) {
	n, err := l.NewNode(0)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, vxlan := "port 10250/tcp (kubelet API)", fmt.Sprintf("port %d/udp (Weft VXLAN)", names.VXLANPort)
	run := func() map[string]preflight.Check {
		out, _ := weftOn(t, l, n.Name, "preflight", "--role", "worker", "-o", "json", "--cni-conf-dir", n.CNIConfDir())
		var rep preflight.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("preflight: %v\n%s", err, out)
		}
		checks := map[string]preflight.Check{}
		for _, c := range rep.Checks {
			checks[c.Name] = c
		}
		for _, name := range []string{kubelet, vxlan} {
			if _, ok := checks[name]; !ok {
				t.Fatalf("preflight has no check %q: %+v", name, rep.Checks)
			}
		}
		return checks
	}
	before := run()
	for _, name := range []string{kubelet, vxlan} {
		if before[name].Result != preflight.Pass {
			t.Errorf("on a fresh node: %+v", before[name])
		}
	}

	var ln net.Listener
	inNS(t, n.Netns, func() (err error) {
		ln, err = net.Listen("tcp4", ":10250")
		return err
	})
	defer ln.Close()
	inNS(t, n.Netns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "wtdfw"})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		// udp dport 4789 drop
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(names.VXLANPort >> 8), byte(names.VXLANPort & 0xff)}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return c.Flush()
	})

	after := run()
	if c := after[kubelet]; c.Result != preflight.Fail || !strings.Contains(c.Detail, "taken") || c.Fix == "" {
		t.Errorf("kubelet's port with a listener on it: %+v", c)
	}
	if c := after[vxlan]; c.Result != preflight.Fail || !strings.Contains(c.Detail, "wtdfw") || strings.Contains(c.Detail, "taken") || c.Fix == "" {
		t.Errorf("VXLAN port dropped by table wtdfw: %+v", c)
	}
	t.Logf("preflight: %s: %s\npreflight: %s: %s", kubelet, after[kubelet].Detail, vxlan, after[vxlan].Detail)
}

// uninstall refuses while the agent runs; once it is stopped (and doctor
// says so), uninstall leaves nothing of Weft's in the node's namespace or directories, and a
// second run finds nothing to do.
func uninstallNode(t *testing.T, l *lab.Lab, node string) {
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	// The plugin binary to remove: a copy in a directory of its own, so
	// that the lab's shared plugin directory stays whole.
	binDir := t.TempDir()
	cni, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cni)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, names.PluginType), b, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"uninstall", "--data-dir", n.DataDir(), "--run-dir", n.RunDir(), "--cni-conf-dir", n.CNIConfDir(), "--cni-bin-dir", binDir}

	if out, err := weftOn(t, l, node, args...); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("uninstall with the agent running: %v\n%s", err, out)
	}
	if left := traces(t, n, binDir); len(left) < 4 {
		t.Fatalf("the node should hold Weft's bridge, VXLAN device, routes, table and files before uninstall; has %v", left)
	}
	if err := l.StopAgent(node, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Doctor without an agent says so, and still checks what it can.
	rep, ok := runDoctor(t, l, node)
	if f := finding(t, rep, "agent", ""); ok || f.Result != doctor.Fail || f.Fix == "" {
		t.Errorf("doctor with the agent stopped (exit ok=%v): %+v", ok, f)
	}
	finding(t, rep, "IPAM", "")
	finding(t, rep, "CNI STATUS", "")
	out, err := weftOn(t, l, node, args...)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("uninstall:\n%s", out)
	if left := traces(t, n, binDir); len(left) > 0 {
		t.Errorf("left after uninstall: %v", left)
	}
	out, err = weftOn(t, l, node, args...)
	if err != nil || !strings.Contains(out, "nothing of Weft's is left") {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
}

// traces lists what of Weft's the node holds: links, routes, the
// nftables table, files.
func traces(t *testing.T, n *lab.NodeState, binDir string) []string {
	t.Helper()
	var left []string
	inNS(t, n.Netns, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, k := range links {
			name := k.Attrs().Name
			if name == names.Bridge || name == names.VXLANDevice || strings.HasPrefix(name, names.VethPrefix) {
				left = append(left, "link "+name)
			}
		}
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Protocol == names.RouteProtocol {
				left = append(left, fmt.Sprintf("route %s", r.Dst))
			}
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTables()
		if err != nil {
			return err
		}
		for _, tb := range tables {
			if tb.Name == names.NFTable {
				left = append(left, "nftables table "+tb.Name)
			}
		}
		return nil
	})
	for _, p := range []string{filepath.Join(n.CNIConfDir(), names.ConfListName), filepath.Join(binDir, names.PluginType), n.DataDir(), n.RunDir()} {
		if _, err := os.Lstat(p); err == nil {
			left = append(left, "file "+p)
		}
	}
	return left
}
