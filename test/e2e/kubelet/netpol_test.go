package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/images"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/netpoltruth"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// The cluster of the truth tables (netpoltruth), on real nodes: the pods
// are spread over both nodes so that a table mixes same-node and
// cross-node pairs. Every pod declares netpoltruth's containerPorts and
// echoes TCP and UDP on each of its ServedPorts.
var npOrder = netpoltruth.Pods

// observable reports whether a table can be seen with traffic here: SCTP
// cannot (this machine's kernel has no SCTP sockets), so the compiler's
// unit test alone checks SCTP tables.
func observable(p netpoltruth.Probe) bool { return p.Protocol == "tcp" || p.Protocol == "udp" }

// npTable is the table want on port/proto.
func npTable(port uint16, proto, want string) netpoltruth.Probe {
	return netpoltruth.Probe{Port: port, Protocol: proto, Want: want}
}

// TestNetPolTruthTablesOnKubeletNodes checks NetworkPolicy as Weft's
// agents enforce it on real nodes: for each case, the whole table of which
// pod answers which, per port and protocol, observed with real traffic
// until it is the one written by hand from the policies' spec (the agents
// apply asynchronously), then the same after a change of policy, pod
// label or namespace label. Then the two guarantees of
// docs/networkpolicy.md that tables cannot show: a new pod under a
// default deny is never answered, and an open connection stops once a
// policy denies it; and a third: the agents' restart changes no table.
func TestNetPolTruthTablesOnKubeletNodes(t *testing.T) {
	testnet.RequireRoot(t, "runs kubelet, containerd and lab namespaces")
	cfg := labtest.Config(t, "nt")
	cfg.Kubelet, cfg.Nodes = true, 2
	cfg.ReadyTimeout = 3 * time.Minute
	start := time.Now()
	l := labtest.Up(t, cfg)
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if out, err := kubectl(t, l, "apply", "-f", manifest(t)); err != nil {
		t.Fatalf("kubectl apply -f deploy/weft.yaml: %v\n%s", err, out)
	}
	if err := l.WaitNodesReady(ctx, 3*time.Minute); err != nil {
		logPods(t, l)
		t.Fatal(err)
	}
	np := newNPCluster(t, l, cs)
	t.Logf("lab up, Weft installed, 9 pods ready: %s", time.Since(start).Round(time.Millisecond))
	// Every pod answers every other before any policy.
	np.expect(t, "no policy", 2*time.Minute, netpoltruth.NoPolicy.Steps[0].Probes)

	for _, tc := range netpoltruth.Cases {
		t.Run(tc.Name, func(t *testing.T) { np.runCase(t, tc) })
	}
	t.Run("dropped packets are logged naming pods and policy", func(t *testing.T) {
		// The default deny case dropped packets to x's pods; the agents
		// logged some (rate-limited), naming both ends and the policy.
		out, err := kubectl(t, l, "-n", "kube-system", "logs", "-l", "app.kubernetes.io/name=weft", "-c", "weft", "--tail=-1", "--prefix")
		if err != nil {
			t.Fatalf("kubectl logs: %v\n%s", err, labtest.Tail(out, 20))
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "policy: dropped a packet") && strings.Contains(line, "policies=x/deny") &&
				strings.Contains(line, `pod="x/`) && strings.Contains(line, "direction=ingress") {
				t.Logf("for example: %s", line)
				return
			}
		}
		t.Errorf("no agent logged a drop by x/deny naming the pod; the agents' logs end:\n%s", labtest.Tail(out, 30))
	})
	t.Run("new pod under default deny is never answered", func(t *testing.T) { newPodUnderDefaultDeny(t, np) })
	t.Run("open connection stops when a policy denies it", func(t *testing.T) {
		np.expect(t, "before the policy", npWait, []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.AllOpen)})
		openConnectionCut(t, np)
	})
	t.Run("agents restart with the policy in place", func(t *testing.T) {
		np.expect(t, "before the policy", npWait, []netpoltruth.Probe{npTable(80, "tcp", netpoltruth.AllOpen)})
		agentsRestart(t, np)
	})
	t.Logf("whole test: %s", time.Since(start).Round(time.Millisecond))
}

// npWait bounds how long the agents may take to make the tables right:
// they apply asynchronously, after the watch brings them the change.
const npWait = 20 * time.Second

// runCase checks one case of the truth tables: every table it probes is
// open first (so that no table below can be one the previous case left),
// then its policies are created and each step's change made, and each
// step's tables must follow. Its policies and changes are undone at the
// end, pass or fail.
func (np *npCluster) runCase(t *testing.T, tc netpoltruth.Case) {
	began := time.Now()
	var open []netpoltruth.Probe
	for _, s := range tc.Steps {
		for _, p := range s.Probes {
			open = append(open, netpoltruth.Probe{Port: p.Port, Protocol: p.Protocol, Want: netpoltruth.AllOpen})
		}
	}
	np.expect(t, "before the policies", npWait, observed(t, open))
	ctx := context.Background()
	var made []*networkingv1.NetworkPolicy
	t.Cleanup(func() {
		for _, p := range made {
			if err := np.cs.NetworkingV1().NetworkPolicies(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete policy %s/%s: %v", p.Namespace, p.Name, err)
			}
		}
		np.undo(t, tc)
	})
	for _, js := range tc.PolicyObjects(func(s string) string { return np.ip[s] }) {
		p := decodePolicy(t, js)
		if _, err := np.cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
		}
		made = append(made, p)
	}
	for i, s := range tc.Steps {
		what := "policies applied"
		if s.Change.What != "" {
			np.change(t, s.Change)
			what = s.Change.What
		}
		stepStart := time.Now()
		rounds := np.expect(t, what, npWait, observed(t, s.Probes))
		t.Logf("step %d (%s): tables right after %s (%d rounds of probes)", i+1, what, time.Since(stepStart).Round(time.Millisecond), rounds)
	}
	t.Logf("case took %s", time.Since(began).Round(time.Millisecond))
}

// observed are the probes that traffic can check here (see observable),
// each port and protocol once.
func observed(t *testing.T, ps []netpoltruth.Probe) []netpoltruth.Probe {
	seen := map[string]bool{}
	var out []netpoltruth.Probe
	for _, p := range ps {
		if !observable(p) {
			t.Logf("%s: not observable here, checked by the compiler's unit test only", p.Key())
			continue
		}
		if !seen[p.Key()] {
			seen[p.Key()] = true
			out = append(out, p)
		}
	}
	return out
}

// change makes c in the cluster.
func (np *npCluster) change(t *testing.T, c netpoltruth.Change) {
	t.Helper()
	switch {
	case c.PodLabel != nil:
		np.labelPod(t, c.PodLabel.Of, c.PodLabel.Value)
	case c.NamespaceLabel != nil:
		np.labelNamespace(t, c.NamespaceLabel.Of, c.NamespaceLabel.Value)
	case c.DeletePolicy != "":
		ns, name, _ := strings.Cut(c.DeletePolicy, "/")
		np.deletePolicy(t, ns, name)
	case c.UpdatePolicy != "":
		np.updatePolicy(t, c.UpdatePolicy)
	}
}

// undo puts back the labels tc's steps changed.
func (np *npCluster) undo(t *testing.T, tc netpoltruth.Case) {
	t.Helper()
	for _, s := range tc.Steps {
		if l := s.Change.PodLabel; l != nil {
			np.labelPod(t, l.Of, netpoltruth.Name(l.Of))
		}
		if l := s.Change.NamespaceLabel; l != nil {
			np.labelNamespace(t, l.Of, l.Of)
		}
	}
}

func decodePolicy(t *testing.T, js string) *networkingv1.NetworkPolicy {
	t.Helper()
	var p networkingv1.NetworkPolicy
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatalf("policy %s: %v", js, err)
	}
	return &p
}

// npCluster is the nine pods, by short name (xa...).
type npCluster struct {
	l    *lab.Lab
	cs   kubernetes.Interface
	pod  map[string]string // short name → pod name
	ip   map[string]string
	node map[string]string
}

func newNPCluster(t *testing.T, l *lab.Lab, cs kubernetes.Interface) *npCluster {
	t.Helper()
	ctx := context.Background()
	np := &npCluster{l: l, cs: cs, pod: map[string]string{}, ip: map[string]string{}, node: map[string]string{}}
	for _, ns := range []string{"x", "y", "z"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns, Labels: map[string]string{"ns": ns}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The namespaces' default ServiceAccounts come from the controller
	// manager; a pod cannot be admitted before its namespace has one.
	testnet.Eventually(t, time.Minute, "default ServiceAccounts in x, y, z", func() error {
		for _, ns := range []string{"x", "y", "z"} {
			if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	serve := []string{"serve"}
	for _, port := range netpoltruth.ServedPorts {
		serve = append(serve, strconv.Itoa(int(port)))
	}
	for i, s := range npOrder {
		var ports []corev1.ContainerPort
		for _, p := range netpoltruth.DeclaredPorts(s) {
			ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: int32(p.Port), Protocol: corev1.Protocol(p.Protocol)})
		}
		np.pod[s] = s[1:]
		// Alternate nodes: each table holds same-node and cross-node pairs
		// (xa n1, xb n2, xc n1, ya n2...).
		np.node[s] = l.Nodes[i%len(l.Nodes)].Name
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: s[1:], Namespace: s[:1], Labels: map[string]string{"pod": s[1:]}},
			Spec: corev1.PodSpec{
				NodeName:                      np.node[s],
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name: "netcheck", Image: images.NetcheckImage, ImagePullPolicy: corev1.PullNever,
					Args:  serve,
					Ports: ports,
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(81)}},
						PeriodSeconds: 1,
					},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods(s[:1]).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 3*time.Minute, "9 netcheck pods Ready", func() error {
		var notReady []string
		for _, s := range npOrder {
			p, err := cs.CoreV1().Pods(s[:1]).Get(ctx, s[1:], metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !podReady(p) || p.Status.PodIP == "" {
				notReady = append(notReady, s+"="+string(p.Status.Phase))
				continue
			}
			np.ip[s] = p.Status.PodIP
		}
		if len(notReady) > 0 {
			return fmt.Errorf("not ready: %s", strings.Join(notReady, " "))
		}
		return nil
	})
	return np
}

func (np *npCluster) labelPod(t *testing.T, short, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"pod":%q}}}`, value)
	if _, err := np.cs.CoreV1().Pods(short[:1]).Patch(context.Background(), np.pod[short], types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label pod %s: %v", short, err)
	}
}

func (np *npCluster) labelNamespace(t *testing.T, ns, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"ns":%q}}}`, value)
	if _, err := np.cs.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label namespace %s: %v", ns, err)
	}
}

func (np *npCluster) updatePolicy(t *testing.T, js string) {
	t.Helper()
	p := decodePolicy(t, js)
	ctx := context.Background()
	cur, err := np.cs.NetworkingV1().NetworkPolicies(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec = p.Spec
	if _, err := np.cs.NetworkingV1().NetworkPolicies(p.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update policy %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (np *npCluster) deletePolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := np.cs.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete policy %s/%s: %v", ns, name, err)
	}
}

// expect probes until every table of probes is observed whole, or fails
// the test with the last observation against the expectation; it returns
// how many rounds of probes that took.
func (np *npCluster) expect(t *testing.T, what string, wait time.Duration, probes []netpoltruth.Probe) (rounds int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, err := np.observe(probes)
		rounds++
		diff := ""
		if err == nil {
			for _, p := range probes {
				if want := p.Table(); got[p.Key()] != want {
					diff += fmt.Sprintf("%s:\ngot\n%s\nwant\n%s\ndiffer\n%s\n", p.Key(), got[p.Key()], want, cellDiff(got[p.Key()], want))
				}
			}
			if diff == "" {
				return rounds
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s: no table within %s (%d rounds): %v", what, wait, rounds, err)
			}
			t.Fatalf("%s: tables not as expected within %s (%d rounds):\n%s", what, wait, rounds, diff)
		}
	}
}

// cellDiff marks the cells where got and want differ with '!'.
func cellDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for i := range w {
		if i >= len(g) || len(g[i]) != len(w[i]) {
			return "(shapes differ)"
		}
		row := []byte(w[i])
		for j := 3; j < len(row); j++ {
			if g[i][j] != w[i][j] {
				row[j] = '!'
			} else {
				row[j] = ' '
			}
		}
		out = append(out, string(row))
	}
	return strings.Join(out, "\n")
}

// observe runs one `netcheck probe` per source pod, all at once, each
// trying every destination on every probe's port, and returns the tables
// by probe key.
func (np *npCluster) observe(probes []netpoltruth.Probe) (map[string]string, error) {
	type result struct {
		lines map[string]string
		err   error
	}
	results := make([]result, len(npOrder))
	var wg sync.WaitGroup
	for i, src := range npOrder {
		args := []string{"exec", "-n", src[:1], np.pod[src], "--", "/netcheck", "probe", "--timeout", "1s"}
		for _, dst := range npOrder {
			if dst == src {
				continue
			}
			for _, p := range probes {
				args = append(args, fmt.Sprintf("%s:%d/%s", np.ip[dst], p.Port, p.Protocol))
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd, err := np.l.Kubectl(args...)
			if err != nil {
				results[i].err = err
				return
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				results[i].err = fmt.Errorf("probe from %s: %v\n%s%s", src, err, out, stderr.String())
				return
			}
			lines := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(line); len(f) == 2 {
					lines[f[0]] = f[1]
				}
			}
			results[i].lines = lines
		}()
	}
	wg.Wait()
	tables := map[string]string{}
	for _, p := range probes {
		var rows []string
		for i, src := range npOrder {
			if results[i].err != nil {
				return nil, results[i].err
			}
			row := src + " "
			for _, dst := range npOrder {
				tg := fmt.Sprintf("%s:%d/%s", np.ip[dst], p.Port, p.Protocol)
				switch {
				case dst == src:
					row += "."
				case results[i].lines[tg] == "ok":
					row += "."
				case results[i].lines[tg] == "fail":
					row += "X"
				default:
					return nil, fmt.Errorf("probe from %s printed nothing for %s", src, tg)
				}
			}
			rows = append(rows, row)
		}
		tables[p.Key()] = strings.Join(rows, "\n")
	}
	return tables, nil
}
