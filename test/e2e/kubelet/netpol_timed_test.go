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
	t.Cleanup(func() {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	})
	return e
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
	// The pollers run before the pod exists, so that they see it from its
	// first moment: they check the addresses its node would hand out next
	// (weft-cni leases the next free one after the last it leased; no pod
	// has left this node yet).
	candidates := nextAddresses(t, np, node, 8)
	var targets []string
	for _, a := range candidates {
		targets = append(targets, a+":80/tcp")
	}
	sources := []string{"ya", "yb", "yc"}
	polls := map[string]*npExec{}
	began := map[string]time.Time{}
	for _, src := range sources {
		polls[src] = np.start(t, src, append([]string{"poll", "--for", "12s", "--every", "20ms", "--timeout", "200ms"}, targets...)...)
		began[src] = stamp(t, polls[src].next(t, "poller in "+src, time.Minute), "started")
	}
	// x/new's own checks go to every pod of y and z (none isolated), on
	// its node and on the other.
	egress := []string{"ya", "yb", "yc", "za", "zb", "zc"}
	var egressTargets []string
	for _, dst := range egress {
		egressTargets = append(egressTargets, np.ip[dst]+":80/tcp")
	}
	created := time.Now()
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
				Args: append([]string{"poll", "--for", "8s", "--every", "20ms", "--timeout", "200ms"}, egressTargets...),
			}, {
				Name: "netcheck", Image: images.NetcheckImage, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"serve", "80"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 1},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods("x").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cs.CoreV1().Pods("x").Delete(context.Background(), "new", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete pod x/new: %v", err)
		}
	})
	var ip string
	deadline := time.Now().Add(2 * time.Minute)
	for ip == "" {
		p, err := cs.CoreV1().Pods("x").Get(ctx, "new", metav1.GetOptions{})
		if err == nil {
			ip = p.Status.PodIP
		}
		if ip == "" {
			if time.Now().After(deadline) {
				t.Fatalf("pod x/new has no address after 2m")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("x/new on %s: created → address %s in the API: %s", node, ip, time.Since(created).Round(time.Millisecond))
	if !slices.Contains(candidates, ip) {
		t.Fatalf("x/new has %s, none of the addresses checked from before it existed (%s)", ip, strings.Join(candidates, " "))
	}
	for _, src := range sources {
		var firstOK []string
		done := ""
		for done == "" {
			line := polls[src].next(t, "poller in "+src, time.Minute)
			switch f := strings.Fields(line); f[0] {
			case "first-ok":
				firstOK = append(firstOK, line)
				if f[1] == ip+":80/tcp" && src == "ya" {
					t.Logf("y/a (allowed): first answer from x/new %s after it was created (checks began %s before)",
						stamp(t, line, f[1]).Sub(created).Round(time.Millisecond), created.Sub(began[src]).Round(time.Millisecond))
				}
			case "done":
				done = line
			}
		}
		if src == "ya" {
			if len(firstOK) == 0 {
				t.Errorf("y/a, allowed, never got an answer from x/new (%s)", done)
			}
			continue
		}
		if len(firstOK) > 0 {
			t.Errorf("%s, denied, got answers (pod created at %d): %s; %s", src, created.UnixNano(), strings.Join(firstOK, "; "), done)
		} else {
			t.Logf("%s (denied, %s): no answer from x/new or any address to come, from %s before its creation on: %s",
				src, np.node[src], created.Sub(began[src]).Round(time.Millisecond), done)
		}
	}
	egressFromNewPod(t, np, node, egress, egressTargets)
	for _, line := range strings.Split(nodeMetrics(t, np, node), "\n") {
		if strings.HasPrefix(line, "weft_policy_address_hints_total") {
			t.Logf("agent on %s: %s", node, line)
		}
	}
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
		t.Fatalf("metrics of the agent on %s: %v", node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of the agent on %s: %v", node, err)
	}
	return string(b)
}

// egressFromNewPod reads what x/new's egress container saw: from its
// start, an answer from each target (allowed: x's policies are ingress
// only), and logs how long after it started each came.
func egressFromNewPod(t *testing.T, np *npCluster, node string, dsts, targets []string) {
	var out string
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out, "\ndone ") {
		if time.Now().After(deadline) {
			t.Fatalf("x/new's egress checks did not finish within 1m: %q", out)
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
// holds.
func nextAddresses(t *testing.T, np *npCluster, node string, n int) []string {
	t.Helper()
	pods, err := np.cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var top netip.Addr
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
// and checks that each stops echoing once a policy denies it.
func openConnectionCut(t *testing.T, np *npCluster) {
	ctx := context.Background()
	flows := []struct{ src, proto string }{{"ya", "tcp"}, {"yb", "tcp"}, {"yc", "udp"}}
	holds := make([]*npExec, len(flows))
	for i, f := range flows {
		args := []string{"hold", "--for", "60s", "--every", "100ms", "--wait", "500ms"}
		if f.proto == "udp" {
			args = append(args, "--udp")
		}
		holds[i] = np.start(t, f.src, append(args, np.ip["xa"]+":80")...)
		if line := holds[i].next(t, "hold from "+f.src, time.Minute); !strings.HasPrefix(line, "connected ") {
			t.Fatalf("hold from %s: %q", f.src, line)
		}
	}
	p := decodePolicy(t, netpoltruth.Policy("x", "deny", `{"podSelector":{}}`))
	applied := time.Now()
	if _, err := np.cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := np.cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), "deny", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete policy x/deny: %v", err)
		}
	})
	for i, f := range flows {
		line := holds[i].next(t, "hold from "+f.src, time.Minute)
		if !strings.HasPrefix(line, "echo-stopped ") {
			t.Errorf("%s flow %s → x/a went on after the deny policy: %q", f.proto, f.src, line)
			continue
		}
		// It did work before the policy.
		if strings.HasSuffix(line, " echoes=0") {
			t.Errorf("%s flow %s → x/a never echoed: %q", f.proto, f.src, line)
		}
		t.Logf("%s flow %s (%s) → x/a (%s): last echo %s after the policy's create call, first unanswered byte sent %s after it (%s)",
			f.proto, f.src, np.node[f.src], np.node["xa"], stamp(t, line, "last-echo").Sub(applied).Round(time.Millisecond),
			stamp(t, line, "sent").Sub(applied).Round(time.Millisecond), line)
	}
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
			t.Fatalf("round %d: %v", rounds+1, err)
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
