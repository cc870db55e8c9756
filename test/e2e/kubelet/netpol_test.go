package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// The cluster of the upstream NetworkPolicy e2e tests, on real nodes:
// namespaces x, y, z labelled ns=x..., pods a, b, c in each labelled
// pod=a..., spread over both nodes so that a table mixes same-node and
// cross-node pairs. Every pod echoes TCP and UDP on 80 and 81, declared as
// containerPorts serve-80-tcp, serve-80-udp, serve-81-tcp, serve-81-udp.
var npOrder = []string{"xa", "xb", "xc", "ya", "yb", "yc", "za", "zb", "zc"}

// npProbe is one table: a port and protocol probed from every pod to
// every other. want has one row per source (xa..zc), one column per
// destination: '.' answered, 'X' not. A pod reaching itself never leaves
// its own namespace and is always '.' (and not probed).
type npProbe struct {
	port  int
	proto string // "tcp" or "udp"
	want  string
}

func (p npProbe) key() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// npStep changes the cluster (or nothing) and names the tables that must
// follow.
type npStep struct {
	what   string
	change func(t *testing.T, np *npCluster)
	probes []npProbe
}

type npCase struct {
	name     string
	policies []string // JSON, as written by npPolicy
	steps    []npStep
	// undo restores what the steps changed beyond the policies.
	undo func(t *testing.T, np *npCluster)
}

const npAllOpen = `
xa .........
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`

// npXClosed is default deny ingress in x: no pod reaches x's pods (each
// still reaches itself); all else is open.
const npXClosed = `
xa .XX......
xb X.X......
xc XX.......
ya XXX......
yb XXX......
yc XXX......
za XXX......
zb XXX......
zc XXX......`

// npOnlyToAClosed: nobody reaches x/a, everything else is open.
const npOnlyToAClosed = `
xa .........
xb X........
xc X........
ya X........
yb X........
yc X........
za X........
zb X........
zc X........`

// npPolicy writes a NetworkPolicy in namespace ns with the given spec JSON.
func npPolicy(ns, name, spec string) string {
	return fmt.Sprintf(`{"metadata":{"namespace":%q,"name":%q},"spec":%s}`, ns, name, spec)
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
	np.expect(t, "no policy", 2*time.Minute, []npProbe{{80, "tcp", npAllOpen}, {81, "udp", npAllOpen}})

	ybIP := np.ip["yb"]
	cases := []npCase{
		{name: "default deny ingress in x", policies: []string{
			npPolicy("x", "deny", `{"podSelector":{}}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npXClosed}, {80, "udp", npXClosed}}}}},

		{name: "allow x/a from pod b of its namespace on TCP 80", policies: []string{
			npPolicy("x", "a-from-b", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"podSelector":{"matchLabels":{"pod":"b"}}}],"ports":[{"port":80}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .........
xb .........
xc X........
ya X........
yb X........
yc X........
za X........
zb X........
zc X........`}, {81, "tcp", npOnlyToAClosed}, {80, "udp", npOnlyToAClosed}}}, {
			what:   "x/c relabelled pod=b",
			change: func(t *testing.T, np *npCluster) { np.labelPod(t, "xc", "b") },
			probes: []npProbe{{80, "tcp", `
xa .........
xb .........
xc .........
ya X........
yb X........
yc X........
za X........
zb X........
zc X........`}},
		}}, undo: func(t *testing.T, np *npCluster) { np.labelPod(t, "xc", "c") }},

		{name: "allow x/a from namespace ns=y", policies: []string{
			npPolicy("x", "a-from-y", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .........
xb X........
xc X........
ya .........
yb .........
yc .........
za X........
zb X........
zc X........`}}}, {
			what:   "namespace z relabelled ns=y",
			change: func(t *testing.T, np *npCluster) { np.labelNamespace(t, "z", "y") },
			probes: []npProbe{{80, "tcp", `
xa .........
xb X........
xc X........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}},
		}}, undo: func(t *testing.T, np *npCluster) { np.labelNamespace(t, "z", "z") }},

		{name: "namespace and pod selector in one peer: AND", policies: []string{
			npPolicy("x", "and", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}},"podSelector":{"matchLabels":{"pod":"b"}}}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .........
xb X........
xc X........
ya X........
yb .........
yc X........
za X........
zb X........
zc X........`}}}}},

		{name: "namespace and pod selector as two peers: OR", policies: []string{
			npPolicy("x", "or", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}},{"podSelector":{"matchLabels":{"pod":"b"}}}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{81, "udp", `
xa .........
xb .........
xc X........
ya .........
yb .........
yc .........
za X........
zb X........
zc X........`}}}}},

		{name: "named port: x/a open on serve-81-tcp only", policies: []string{
			npPolicy("x", "named", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"ports":[{"port":"serve-81-tcp"}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{81, "tcp", npAllOpen}, {80, "tcp", npOnlyToAClosed}, {81, "udp", npOnlyToAClosed}}}}},

		{name: "egress: x/a denied everything but namespace y on TCP 80", policies: []string{
			npPolicy("x", "a-no-egress", `{"podSelector":{"matchLabels":{"pod":"a"}},"policyTypes":["Egress"]}`),
			npPolicy("x", "a-to-y", `{"podSelector":{"matchLabels":{"pod":"a"}},"policyTypes":["Egress"],
				"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}}],"ports":[{"port":80}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .XX...XXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}, {81, "tcp", `
xa .XXXXXXXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}, {80, "udp", `
xa .XXXXXXXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}}}}},

		{name: "ipBlock: x/a from the cluster CIDR except y/b", policies: []string{
			npPolicy("x", "block", fmt.Sprintf(`{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"ipBlock":{"cidr":"10.244.0.0/16","except":["%s/32"]}}]}]}`, ybIP)),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .........
xb .........
xc .........
ya .........
yb X........
yc .........
za .........
zb .........
zc .........`}, {81, "udp", `
xa .........
xb .........
xc .........
ya .........
yb X........
yc .........
za .........
zb .........
zc .........`}}}}},

		{name: "match expressions In, NotIn, Exists, DoesNotExist", policies: []string{
			npPolicy("x", "expr", `{"podSelector":{"matchExpressions":[{"key":"pod","operator":"NotIn","values":["a","b"]}]},
				"ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"key":"ns","operator":"In","values":["y","z"]}]},
				                    "podSelector":{"matchExpressions":[{"key":"pod","operator":"NotIn","values":["c"]},{"key":"pod","operator":"Exists"},{"key":"tier","operator":"DoesNotExist"}]}}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa ..X......
xb ..X......
xc .........
ya .........
yb .........
yc ..X......
za .........
zb .........
zc ..X......`}}}}},

		{name: "egress: x/a to namespace y on UDP 80 only", policies: []string{
			npPolicy("x", "egress-y", `{"podSelector":{"matchLabels":{"pod":"a"}},"policyTypes":["Egress"],
				"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}}],"ports":[{"protocol":"UDP","port":80}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "udp", `
xa .XX...XXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}, {80, "tcp", `
xa .XXXXXXXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`}}}}},

		{name: "default deny both ways in x", policies: []string{
			npPolicy("x", "deny-all", `{"podSelector":{},"policyTypes":["Ingress","Egress"]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "udp", `
xa .XXXXXXXX
xb X.XXXXXXX
xc XX.XXXXXX
ya XXX......
yb XXX......
yc XXX......
za XXX......
zb XXX......
zc XXX......`}}}}},

		{name: "stacked policies add up", policies: []string{
			npPolicy("x", "deny", `{"podSelector":{}}`),
			npPolicy("x", "a-from-z", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"z"}}}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", `
xa .XX......
xb X.X......
xc XX.......
ya XXX......
yb XXX......
yc XXX......
za .XX......
zb .XX......
zc .XX......`}}}}},

		{name: "protocol only: x/a takes UDP on any port, no TCP", policies: []string{
			npPolicy("x", "a-udp", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"ports":[{"protocol":"UDP"}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npOnlyToAClosed}, {81, "tcp", npOnlyToAClosed}, {80, "udp", npAllOpen}, {81, "udp", npAllOpen}}}}},

		{name: "port range: x/a takes TCP 81-90 (endPort), not 80, not UDP", policies: []string{
			npPolicy("x", "a-range", `{"podSelector":{"matchLabels":{"pod":"a"}},
				"ingress":[{"ports":[{"protocol":"TCP","port":81,"endPort":90}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npOnlyToAClosed}, {81, "tcp", npAllOpen}, {81, "udp", npOnlyToAClosed}}}}},

		{name: "an allow-all policy beside a default deny opens everything", policies: []string{
			npPolicy("x", "deny", `{"podSelector":{}}`),
			npPolicy("x", "allow-all", `{"podSelector":{},"ingress":[{}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npAllOpen}, {81, "udp", npAllOpen}}}}},

		{name: "a deleted policy stops being enforced", policies: []string{
			npPolicy("x", "a-deny", `{"podSelector":{"matchLabels":{"pod":"a"}}}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npOnlyToAClosed}}}, {
			what:   "policy deleted",
			change: func(t *testing.T, np *npCluster) { np.deletePolicy(t, "x", "a-deny") },
			probes: []npProbe{{80, "tcp", npAllOpen}, {81, "udp", npAllOpen}},
		}}},

		{name: "policy update: x/a's allowed port moves from 80 to 81", policies: []string{
			npPolicy("x", "a-port", `{"podSelector":{"matchLabels":{"pod":"a"}},"ingress":[{"ports":[{"port":80}]}]}`),
		}, steps: []npStep{{probes: []npProbe{{80, "tcp", npAllOpen}, {81, "tcp", npOnlyToAClosed}}}, {
			what: "port changed to 81",
			change: func(t *testing.T, np *npCluster) {
				np.updatePolicy(t, npPolicy("x", "a-port", `{"podSelector":{"matchLabels":{"pod":"a"}},"ingress":[{"ports":[{"port":81}]}]}`))
			},
			probes: []npProbe{{81, "tcp", npAllOpen}, {80, "tcp", npOnlyToAClosed}},
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			// The previous case's policies are gone: every table of this
			// case is open again first, so that no table below can be
			// one left over.
			var open []npProbe
			for _, s := range tc.steps {
				for _, p := range s.probes {
					open = append(open, npProbe{p.port, p.proto, npAllOpen})
				}
			}
			np.expect(t, "before the policies", npWait, dedupe(open))
			var made []*networkingv1.NetworkPolicy
			t.Cleanup(func() {
				for _, p := range made {
					if err := cs.NetworkingV1().NetworkPolicies(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
						t.Errorf("delete policy %s/%s: %v", p.Namespace, p.Name, err)
					}
				}
				if tc.undo != nil {
					tc.undo(t, np)
				}
			})
			for _, js := range tc.policies {
				p := decodePolicy(t, js)
				if _, err := cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
				}
				made = append(made, p)
			}
			for i, s := range tc.steps {
				what := "policies applied"
				if s.change != nil {
					s.change(t, np)
					what = s.what
				}
				stepStart := time.Now()
				rounds := np.expect(t, what, npWait, s.probes)
				t.Logf("step %d (%s): tables right after %s (%d rounds of probes)", i+1, what, time.Since(stepStart).Round(time.Millisecond), rounds)
			}
			t.Logf("case took %s", time.Since(began).Round(time.Millisecond))
		})
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
		np.expect(t, "before the policy", npWait, []npProbe{{80, "tcp", npAllOpen}})
		openConnectionCut(t, np)
	})
	t.Run("agents restart with the policy in place", func(t *testing.T) {
		np.expect(t, "before the policy", npWait, []npProbe{{80, "tcp", npAllOpen}})
		agentsRestart(t, np)
	})
	t.Logf("whole test: %s", time.Since(start).Round(time.Millisecond))
}

// npWait bounds how long the agents may take to make the tables right:
// they apply asynchronously, after the watch brings them the change.
const npWait = 20 * time.Second

func dedupe(ps []npProbe) []npProbe {
	seen := map[string]bool{}
	var out []npProbe
	for _, p := range ps {
		if !seen[p.key()] {
			seen[p.key()] = true
			out = append(out, p)
		}
	}
	return out
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
	var ports []corev1.ContainerPort
	for _, port := range []int32{80, 81} {
		ports = append(ports,
			corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-tcp", port), ContainerPort: port, Protocol: corev1.ProtocolTCP},
			corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-udp", port), ContainerPort: port, Protocol: corev1.ProtocolUDP})
	}
	for i, s := range npOrder {
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
					Args:  []string{"serve", "80", "81"},
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
func (np *npCluster) expect(t *testing.T, what string, wait time.Duration, probes []npProbe) (rounds int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, err := np.observe(probes)
		rounds++
		diff := ""
		if err == nil {
			for _, p := range probes {
				if want := strings.TrimSpace(p.want); got[p.key()] != want {
					diff += fmt.Sprintf("%s:\ngot\n%s\nwant\n%s\ndiffer\n%s\n", p.key(), got[p.key()], want, cellDiff(got[p.key()], want))
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
func (np *npCluster) observe(probes []npProbe) (map[string]string, error) {
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
				args = append(args, fmt.Sprintf("%s:%d/%s", np.ip[dst], p.port, p.proto))
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
				tg := fmt.Sprintf("%s:%d/%s", np.ip[dst], p.port, p.proto)
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
		tables[p.key()] = strings.Join(rows, "\n")
	}
	return tables, nil
}
