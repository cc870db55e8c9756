package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/internal/lab/images"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/netpoltruth"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// npExec is a netcheck running in a pod through `kubectl exec`, its
// output read line by line.
type npExec struct {
	cmd   *exec.Cmd
	lines chan string
}

func (np *npCluster) start(t *testing.T, src string, args ...string) *npExec {
	t.Helper()
	cmd, err := np.l.Kubectl(append([]string{"exec", "-n", src[:1], np.pod[src], "--", "/netcheck"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := &npExec{cmd: cmd, lines: make(chan string, 16)}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		close(e.lines)
	}()
	// Ended and reaped whatever happens; every netcheck mode is bounded.
	t.Cleanup(e.stop)
	return e
}

// stop ends the netcheck (and the kubectl exec that runs it) now.
func (e *npExec) stop() {
	e.cmd.Process.Kill()
	e.cmd.Wait()
}

// next is the next line of output, failing the test after wait.
func (e *npExec) next(t *testing.T, what string, wait time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-e.lines:
		if !ok {
			t.Fatalf("%s: netcheck ended without a line", what)
		}
		return line
	case <-time.After(wait):
		t.Fatalf("%s: no line within %s", what, wait)
	}
	return ""
}

// stamp reads the Unix nanosecond timestamp after key= (or after the
// field named key) in line.
func stamp(t *testing.T, line, key string) time.Time {
	t.Helper()
	f := strings.Fields(line)
	for i, s := range f {
		var v string
		if strings.HasPrefix(s, key+"=") {
			v = strings.TrimPrefix(s, key+"=")
		} else if s == key && i+1 < len(f) {
			v = f[i+1]
		} else {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%q: %s is not a timestamp", line, key)
		}
		return time.Unix(0, n)
	}
	t.Fatalf("%q has no %s", line, key)
	return time.Time{}
}

// newPodUnderDefaultDeny creates pod x/new while x denies all ingress but
// from y/a, checked from before it exists: the pods denied (y/b on
// another node, y/c on its own) never get an answer; y/a, allowed, does
// (so the checks could see one). A second container in x/new checks its
// own way out (egress is open) from its first moment: how long after it
// started its allowed traffic flowed is logged (the agent learns the
// pod's address from the CNI plugin's ADD, before the kubelet reports
// it), never asserted.
//
// The checks from y run for a fixed window from before the pod exists.
// A window that ended before x/new answered y/a (a loaded machine: the
// pod or its verdicts came late) saw nothing: the pod is made again,
// checked over a window twice as long.
func newPodUnderDefaultDeny(t *testing.T, np *npCluster) {
	ctx := context.Background()
	cs := np.cs
	for _, js := range []string{
		netpoltruth.Policy("x", "deny", `{"podSelector":{}}`),
		netpoltruth.Policy("x", "new-from-ya", `{"podSelector":{"matchLabels":{"pod":"new"}},
			"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}},"podSelector":{"matchLabels":{"pod":"a"}}}]}]}`),
	} {
		p := decodePolicy(t, js)
		if _, err := cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete policy x/%s: %v", p.Name, err)
			}
		})
	}
	// The agents hold the policies before the pod exists.
	np.expect(t, "default deny in x", npWait, []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.XClosed)})

	// The pod goes to y/c's node: one denied pair crosses nodes, one not.
	node := np.node["yc"]
	if np.node["yb"] == node {
		t.Fatalf("y/b and y/c are both on %s", node)
	}
	const attempts = 3
	window := 12 * time.Second
	var last netip.Addr
	for i := 1; ; i++ {
		measured, ip := newPodOnce(t, np, node, window, last)
		if measured {
			return
		}
		if i == attempts {
			t.Fatalf("in each of %d attempts x/new answered y/a only after the checks' window (the last %s): nothing was measured", attempts, window)
		}
		t.Logf("attempt %d: x/new answered y/a only after the %s window of the checks; once more with %s", i, window, 2*window)
		window *= 2
		last = ip
	}
}

// newPodOnce is one attempt of newPodUnderDefaultDeny with checks from y
// running for window: it reports whether the window saw x/new answer
// y/a (else nothing was measured), and x/new's address. x/new is deleted
// when it returns; its address is after both the highest one on node and
// after.
func newPodOnce(t *testing.T, np *npCluster, node string, window time.Duration, after netip.Addr) (measured bool, ip netip.Addr) {
	// The pollers run before the pod exists, so that they see it from its
	// first moment: they check the addresses its node would hand out next
	// (weft-cni leases the next free one after the last it leased).
	candidates := nextAddresses(t, np, node, after, 8)
	var targets []string
	for _, a := range candidates {
		targets = append(targets, a+":80/tcp")
	}
	sources := []string{"ya", "yb", "yc"}
	polls := map[string]*npExec{}
	began := map[string]time.Time{}
	every := []string{"--every", "20ms", "--timeout", "200ms"}
	for _, src := range sources {
		polls[src] = np.start(t, src, append(append([]string{"poll", "--for", window.String()}, every...), targets...)...)
		began[src] = stamp(t, polls[src].next(t, "poller in "+src, time.Minute), "started")
	}
	// x/new's own checks go to every pod of y and z (none isolated), on
	// its node and on the other, until each answered.
	egress := []string{"ya", "yb", "yc", "za", "zb", "zc"}
	var egressTargets []string
	for _, dst := range egress {
		egressTargets = append(egressTargets, np.ip[dst]+":80/tcp")
	}
	created := time.Now()
	addr := createNewPod(t, np, node, append(append([]string{"poll", "--for", "2m", "--until-all-ok"}, every...), egressTargets...))
	defer deleteNewPod(t, np)
	t.Logf("x/new on %s: created → address %s in the API: %s", node, addr, time.Since(created).Round(time.Millisecond))
	if !slices.Contains(candidates, addr.String()) {
		t.Fatalf("x/new has %s, none of the addresses checked from before it existed (%s)", addr, strings.Join(candidates, " "))
	}
	firstOK, done := map[string][]string{}, map[string]string{}
	for _, src := range sources {
		firstOK[src], done[src] = pollResults(t, polls[src], "poller in "+src, window+time.Minute)
	}
	// The precondition of the denied checks: the window saw x/new answer
	// its allowed peer. If not, y/a must get an answer now (or the policy
	// is wrong), and this attempt measured nothing.
	target := addr.String() + ":80/tcp"
	if !slices.ContainsFunc(firstOK["ya"], func(l string) bool { return strings.Fields(l)[1] == target }) {
		np.expectAnswer(t, "ya", target, npWait)
		return false, addr
	}
	for _, line := range firstOK["ya"] {
		if f := strings.Fields(line); f[1] == target {
			t.Logf("y/a (allowed): first answer from x/new %s after it was created (checks began %s before)",
				stamp(t, line, f[1]).Sub(created).Round(time.Millisecond), created.Sub(began["ya"]).Round(time.Millisecond))
		}
	}
	for _, src := range []string{"yb", "yc"} {
		if len(firstOK[src]) > 0 {
			t.Errorf("%s, denied, got answers (pod created at %d): %s; %s", src, created.UnixNano(), strings.Join(firstOK[src], "; "), done[src])
		} else {
			t.Logf("%s (denied, %s): no answer from x/new or any address to come, from %s before its creation on: %s",
				src, np.node[src], created.Sub(began[src]).Round(time.Millisecond), done[src])
		}
	}
	egressFromNewPod(t, np, node, egress, egressTargets)
	for _, line := range strings.Split(nodeMetrics(t, np, node), "\n") {
		if strings.HasPrefix(line, "weft_policy_address_hints_total") {
			t.Logf("agent on %s: %s", node, line)
		}
	}
	return true, addr
}

// createNewPod creates pod x/new on node, whose first container runs
// netcheck with egressArgs and whose second serves TCP and UDP on 80, and
// returns its address once the API server has it.
func createNewPod(t *testing.T, np *npCluster, node string, egressArgs []string) netip.Addr {
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "x", Labels: map[string]string{"pod": "new"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: new(int64),
			// The egress checks run once; their output stays for logs.
			RestartPolicy: corev1.RestartPolicyNever,
			// The kubelet starts containers in order: the egress checks
			// first, as close to the sandbox's start as a process gets.
			Containers: []corev1.Container{{
				Name: "egress", Image: images.NetcheckImage, ImagePullPolicy: corev1.PullNever,
				Args: egressArgs,
			}, {
				Name: "netcheck", Image: images.NetcheckImage, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"serve", "80"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 1},
			}},
		},
	}
	if _, err := np.cs.CoreV1().Pods("x").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var addr netip.Addr
	testnet.Eventually(t, 2*time.Minute, "an address for pod x/new", func() error {
		p, err := np.cs.CoreV1().Pods("x").Get(ctx, "new", metav1.GetOptions{})
		if err != nil {
			return err
		}
		addr, err = netip.ParseAddr(p.Status.PodIP)
		return err
	})
	return addr
}

// deleteNewPod deletes pod x/new and waits until it is gone, so that the
// name is free again.
func deleteNewPod(t *testing.T, np *npCluster) {
	ctx := context.Background()
	if err := np.cs.CoreV1().Pods("x").Delete(ctx, "new", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete pod x/new: %v", err)
		return
	}
	testnet.Eventually(t, 2*time.Minute, "pod x/new gone", func() error {
		if _, err := np.cs.CoreV1().Pods("x").Get(ctx, "new", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
}

// pollResults reads a poller's output to its end: its first-ok lines and
// its done line.
func pollResults(t *testing.T, e *npExec, what string, wait time.Duration) (firstOK []string, done string) {
	t.Helper()
	for done == "" {
		line := e.next(t, what, wait)
		switch strings.Fields(line)[0] {
		case "first-ok":
			firstOK = append(firstOK, line)
		case "done":
			done = line
		}
	}
	return firstOK, done
}

// expectAnswer probes target from pod src until it answers, or fails the
// test after wait.
func (np *npCluster) expectAnswer(t *testing.T, src, target string, wait time.Duration) {
	t.Helper()
	testnet.Eventually(t, wait, src+" reaches "+target, func() error {
		cmd, err := np.l.Kubectl("exec", "-n", src[:1], np.pod[src], "--", "/netcheck", "probe", "--timeout", "1s", target)
		if err != nil {
			return err
		}
		out, err := cmd.Output()
		if err != nil {
			return err
		}
		if f := strings.Fields(string(out)); len(f) != 2 || f[1] != "ok" {
			return fmt.Errorf("probe printed %q", out)
		}
		return nil
	})
}

// nodeMetrics reads the agent's /metrics on node, over the node
// namespace's loopback (the agent's pod shares it).
func nodeMetrics(t *testing.T, np *npCluster, node string) string {
	t.Helper()
	var netnsName string
	for _, n := range np.l.Nodes {
		if n.Name == node {
			netnsName = n.Netns
		}
	}
	if netnsName == "" {
		t.Fatalf("no lab node %s", node)
	}
	return agentMetrics(t, netnsName)
}

// agentMetrics reads the agent's /metrics in the node namespace netnsName,
// over its loopback.
func agentMetrics(t *testing.T, netnsName string) string {
	t.Helper()
	// The transport dials on a goroutine of its own: the dial itself
	// enters the node's namespace.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = ns.WithNetNSPath("/run/netns/"+netnsName, func(ns.NetNS) error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", names.MetricsPort))
	if err != nil {
		t.Fatalf("metrics of the agent in %s: %v", netnsName, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of the agent in %s: %v", netnsName, err)
	}
	return string(b)
}

// egressFromNewPod reads what x/new's egress container saw: from its
// start, an answer from each target (allowed: x's policies are ingress
// only), and logs how long after it started each came.
func egressFromNewPod(t *testing.T, np *npCluster, node string, dsts, targets []string) {
	var out string
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(out, "\ndone ") {
		if time.Now().After(deadline) {
			t.Fatalf("x/new's egress checks did not finish within 3m: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
		cmd, err := np.l.Kubectl("logs", "-n", "x", "new", "-c", "egress")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := cmd.Output() // not up yet, or running: try again
		out = string(b)
	}
	var started time.Time
	firstOK := map[string]time.Time{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch f := strings.Fields(line); f[0] {
		case "started":
			started = stamp(t, line, "started")
		case "first-ok":
			firstOK[f[1]] = stamp(t, line, f[1])
		}
	}
	for i, tg := range targets {
		where := "other node"
		if np.node[dsts[i]] == node {
			where = "same node"
		}
		src := fmt.Sprintf("%s/%s (%s)", dsts[i][:1], dsts[i][1:], where)
		at, ok := firstOK[tg]
		if !ok {
			t.Errorf("x/new never reached %s %s, allowed: %s", src, tg, out)
			continue
		}
		t.Logf("x/new → %s (allowed): first answer %s after x/new's container started", src, at.Sub(started).Round(time.Millisecond))
	}
}

// nextAddresses is the n addresses after the highest one a pod on node
// holds, and after after (the address of a pod of node's that is gone).
func nextAddresses(t *testing.T, np *npCluster, node string, after netip.Addr, n int) []string {
	t.Helper()
	pods, err := np.cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	top := after
	for _, p := range pods.Items {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && !p.Spec.HostNetwork && a.Compare(top) > 0 {
			top = a
		}
	}
	if !top.IsValid() {
		t.Fatalf("no pod address on %s", node)
	}
	var out []string
	for a := top.Next(); len(out) < n; a = a.Next() {
		out = append(out, a.String())
	}
	return out
}

// openConnectionCut holds TCP connections to x/a from y/a and y/b, and a
// UDP flow from y/c (one of them on x/a's node, see npOrder's placement),
// and checks that each stops echoing once a policy denies it. Each flow
// echoes before the policy is made; one that stalls before the policy
// (a loaded machine) proves nothing, and the check runs again.
func openConnectionCut(t *testing.T, np *npCluster) {
	const attempts = 3
	for i := 1; ; i++ {
		stalled := cutOnce(t, np)
		if stalled == "" {
			return
		}
		if i == attempts {
			t.Fatalf("in each of %d attempts a flow stalled before the policy was made, so none measured the policy: %s", attempts, stalled)
		}
		t.Logf("attempt %d measured nothing, once more: %s", i, stalled)
		np.expect(t, "before the policy", npWait, []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.AllOpen)})
	}
}

// cutOnce is one attempt of openConnectionCut. It returns why it measured
// nothing (a flow whose echo stopped before the policy), or "" once every
// flow was seen to stop after it. It removes its policy and flows.
func cutOnce(t *testing.T, np *npCluster) (stalled string) {
	ctx := context.Background()
	flows := []struct{ src, proto string }{{"ya", "tcp"}, {"yb", "tcp"}, {"yc", "udp"}}
	holds := make([]*npExec, len(flows))
	defer func() {
		for _, h := range holds {
			if h != nil {
				h.stop()
			}
		}
	}()
	for i, f := range flows {
		args := []string{"hold", "--for", "60s", "--every", "100ms", "--wait", "1s", "--establish", "60s"}
		if f.proto == "udp" {
			args = append(args, "--udp")
		}
		holds[i] = np.start(t, f.src, append(args, np.ip["xa"]+":80")...)
		if line := holds[i].next(t, "hold from "+f.src, time.Minute); !strings.HasPrefix(line, "connected ") {
			t.Fatalf("hold from %s: %q", f.src, line)
		}
	}
	// The precondition: every flow echoes before the policy is made.
	for i, f := range flows {
		if line := holds[i].next(t, "first echo from "+f.src, 2*time.Minute); !strings.HasPrefix(line, "echoing ") {
			t.Fatalf("%s flow %s → x/a never echoed before the policy: %q", f.proto, f.src, line)
		}
	}
	p := decodePolicy(t, netpoltruth.Policy("x", "deny", `{"podSelector":{}}`))
	applied := time.Now()
	if _, err := np.cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := np.cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), "deny", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete policy x/deny: %v", err)
		}
	}()
	for i, f := range flows {
		line := holds[i].next(t, "hold from "+f.src, time.Minute)
		if !strings.HasPrefix(line, "echo-stopped ") {
			t.Errorf("%s flow %s → x/a went on after the deny policy: %q", f.proto, f.src, line)
			continue
		}
		if sent := stamp(t, line, "sent"); sent.Before(applied) {
			stalled += fmt.Sprintf("%s flow %s stopped %s before the policy's create call (%s); ",
				f.proto, f.src, applied.Sub(sent).Round(time.Millisecond), line)
			continue
		}
		t.Logf("%s flow %s (%s) → x/a (%s): last echo %s after the policy's create call, first unanswered byte sent %s after it (%s)",
			f.proto, f.src, np.node[f.src], np.node["xa"], stamp(t, line, "last-echo").Sub(applied).Round(time.Millisecond),
			stamp(t, line, "sent").Sub(applied).Round(time.Millisecond), line)
	}
	return stalled
}

// agentsRestart deletes the weft pods of both nodes while x denies all
// ingress: every table observed until the DaemonSet's new pods are Ready,
// and once more after, is the policy's (the kernel holds the verdicts;
// the new agent reads them back and changes nothing).
func agentsRestart(t *testing.T, np *npCluster) {
	ctx := context.Background()
	p := decodePolicy(t, netpoltruth.Policy("x", "deny", `{"podSelector":{}}`))
	if _, err := np.cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := np.cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), "deny", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete policy x/deny: %v", err)
		}
	})
	deny := []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.XClosed)}
	np.expect(t, "default deny in x", npWait, deny)

	const selector = "app.kubernetes.io/name=weft"
	old, err := np.cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	oldUID := map[string]bool{}
	for _, p := range old.Items {
		oldUID[string(p.UID)] = true
		if err := np.cs.CoreV1().Pods("kube-system").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	restarted := func() bool {
		list, err := np.cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(list.Items) != len(np.l.Nodes) {
			return false
		}
		for _, p := range list.Items {
			if oldUID[string(p.UID)] || !podReady(&p) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(3 * time.Minute)
	rounds := 0
	for done := false; !done; {
		done = restarted() // then one more round with the new agents in place
		if !done && time.Now().After(deadline) {
			t.Fatal("weft pods not back within 3m")
		}
		got, err := np.observe(deny)
		if err != nil {
			// kubectl exec failed (a loaded API server): this round saw
			// no table, right or wrong; the next one looks again.
			t.Logf("round %d saw no table: %v", rounds+1, err)
			done = false
			continue
		}
		rounds++
		if want := deny[0].Table(); got[deny[0].Key()] != want {
			t.Fatalf("round %d while the agents restart: 80/tcp\ngot\n%s\nwant\n%s\ndiffer\n%s", rounds, got[deny[0].Key()], want, cellDiff(got[deny[0].Key()], want))
		}
	}
	t.Logf("%d rounds of probes while the agents restarted and after: every table the policy's", rounds)
	// The new agents follow the cluster: the policy's removal opens x.
	if err := np.cs.NetworkingV1().NetworkPolicies("x").Delete(ctx, "deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	np.expect(t, "policy deleted after the restart", npWait, []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.AllOpen)})
}
