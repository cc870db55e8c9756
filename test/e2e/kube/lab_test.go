package kube

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/store/kubestore"
	"github.com/weftnet/weft/internal/testkit/labtest"
)

// Whole clusters in network namespaces with the Kubernetes datastore: the
// control plane runs inside the lab's underlay namespace (the host's
// namespace gets no lab address and connects to none), the lab plays
// kubelet and registers each node's Node, kube-controller-manager assigns
// the podCIDRs, real agents run with --datastore kubernetes, and pods are
// made by the real plugin through libcni.

func TestKubeLabHostGW(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	l := kubeLab(t, cluster.BackendHostGW, 1)
	checkNodes(t, l)
	registerPods(t, l)
	checkAgentIdentity(t, l)
	deleteNodes(t, l)
}

func TestKubeLabAutoTwoSegments(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	l := kubeLab(t, cluster.BackendAuto, 2)
	checkNodes(t, l)
	t.Run("join-and-leave", func(t *testing.T) { joinAndLeave(t, l) })
	t.Run("delete-nodes", func(t *testing.T) { deleteNodes(t, l) })
}

// joinAndLeave: a node that joins is reached by every pod; `weft agent
// --cleanup` on it takes its record off its Node (the Node itself stays)
// and every peer drops it.
func joinAndLeave(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	n, err := l.JoinNode(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	fullMatrix(t, l)
	gone := *n
	mac := labtest.VTEPMAC(t, l, n.Name)
	if len(traces(t, l, "n1", &gone, mac)) == 0 {
		t.Fatalf("n1 holds nothing about %s: the check below would prove nothing", n.Name)
	}
	if err := l.CleanupNode(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"n1", "n2", "n3"} {
		forgets(t, l, peer, &gone, mac)
	}
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, gone.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range node.Annotations {
		if strings.HasPrefix(k, kubestore.AnnotationPrefix) {
			t.Errorf("annotation %s left on %s after cleanup", k, gone.Name)
		}
	}
	// Removing the node from the lab for good deletes its Node, as an
	// operator does with `kubectl delete node`.
	if err := l.RemoveNode(ctx, gone.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, gone.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after RemoveNode: %v, want NotFound", gone.Name, err)
	}
	fullMatrix(t, l)
}

func TestKubeLabVXLAN(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	l := kubeLab(t, cluster.BackendVXLAN, 1)
	checkNodes(t, l)
	t.Run("control-plane-outage", func(t *testing.T) { controlPlaneOutage(t, l) })
	t.Run("delete-nodes", func(t *testing.T) { deleteNodes(t, l) })
}

func kubeLab(t *testing.T, backend cluster.Backend, segments int) *lab.Lab {
	t.Helper()
	cfg := labtest.Config(t, "wtk")
	cfg.Backend, cfg.Segments, cfg.Nodes, cfg.PodsPerNode = backend, segments, 3, 2
	cfg.Datastore = "kubernetes"
	cfg.ReadyTimeout = 60 * time.Second
	start := time.Now()
	l := labtest.Up(t, cfg)
	t.Logf("lab %s up (%s, %d segment(s)) in %s, control plane at %s", cfg.Name, backend, segments,
		time.Since(start).Round(time.Millisecond), l.Datastore.Endpoint)
	fullMatrix(t, l)
	return l
}

// checkNodes: every node's subnet is the podCIDR the controller-manager
// gave its Node, and its record is on the Node.
func checkNodes(t *testing.T, l *lab.Lab) {
	t.Helper()
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		node, err := cs.CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Spec.PodCIDR != n.Subnet.String() {
			t.Errorf("node %s: agent's subnet %s, Node's podCIDR %q", n.Name, n.Subnet, node.Spec.PodCIDR)
		}
		if got := node.Annotations[kubestore.AnnotUnderlayIP]; got != n.UnderlayIP.String() {
			t.Errorf("node %s: %s = %q, want %s", n.Name, kubestore.AnnotUnderlayIP, got, n.UnderlayIP)
		}
		if got := node.Annotations[kubestore.AnnotBackend]; got != string(l.Backend) {
			t.Errorf("node %s: %s = %q, want %s", n.Name, kubestore.AnnotBackend, got, l.Backend)
		}
	}
}

// registerPods does kubelet's part for the lab's pods: a Pod object on its
// Node (the name and namespace the lab passed the plugin in CNI_ARGS),
// running, with the address the plugin gave it, which must lie in the
// Node's podCIDR.
func registerPods(t *testing.T, l *lab.Lab) {
	t.Helper()
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range l.Nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range n.Pods {
			pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name},
				Spec: corev1.PodSpec{NodeName: n.Name,
					Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create pod %s: %v", p.Name, err)
			}
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP.String(),
				PodIPs: []corev1.PodIP{{IP: p.IP.String()}}, HostIP: n.UnderlayIP.String()}
			if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("status of pod %s: %v", p.Name, err)
			}
			cidr, err := netip.ParsePrefix(node.Spec.PodCIDR)
			if err != nil || !cidr.Contains(p.IP) {
				t.Errorf("pod %s on %s has %s, outside the Node's podCIDR %q", p.Name, n.Name, p.IP, node.Spec.PodCIDR)
			}
		}
	}
}

// checkAgentIdentity: the agents ran with the manifest's ServiceAccount,
// whose token the API server ties to the agent's Node: n1's credentials
// cannot write n2's Node.
func checkAgentIdentity(t *testing.T, l *lab.Lab) {
	t.Helper()
	n1, _ := l.Node("n1")
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(n1.Dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = lab.DialIn(l.Underlay)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := who.Status.UserInfo.Username; u != "system:serviceaccount:kube-system:weft" {
		t.Fatalf("n1's agent is %q", u)
	}
	// (The API server loads a new admission policy within a second or so.)
	testnet.Eventually(t, 20*time.Second, "n1's agent may not patch n2", func() error {
		_, err := cs.CoreV1().Nodes().Patch(context.Background(), "n2", types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"weft.dev/probe-port":"1"}}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("got %v, want Forbidden", err)
		}
		return nil
	})
}

// forgets waits until node holds nothing about gone (see traces).
func forgets(t *testing.T, l *lab.Lab, node string, gone *lab.NodeState, goneMAC string) {
	t.Helper()
	testnet.Eventually(t, 20*time.Second, node+" forgets "+gone.Name, func() error {
		if tr := traces(t, l, node, gone, goneMAC); len(tr) > 0 {
			return fmt.Errorf("%s still holds:\n%s", node, strings.Join(tr, "\n"))
		}
		return nil
	})
}

// traces is what node still holds about gone: routes to its subnet, its
// underlay address, its VTEP MAC.
func traces(t *testing.T, l *lab.Lab, node string, gone *lab.NodeState, goneMAC string) []string {
	t.Helper()
	return labtest.Kernel(t, l, node).Mentioning(gone.Subnet.String(), gone.UnderlayIP.String(), goneMAC, gone.Subnet.Masked().Addr().String())
}

// deleteNodes: a Node deleted while every agent runs leaves every peer's
// datapath; a Node deleted while an agent is down leaves that agent's
// datapath when it starts again; the remaining pods keep talking.
func deleteNodes(t *testing.T, l *lab.Lab) {
	t.Helper()
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n2, _ := l.Node("n2")
	n3, _ := l.Node("n3")
	mac2, mac3 := labtest.VTEPMAC(t, l, "n2"), labtest.VTEPMAC(t, l, "n3")
	for _, peer := range []string{"n1", "n2"} {
		if len(traces(t, l, peer, n3, mac3)) == 0 {
			t.Fatalf("%s holds nothing about n3 before the delete: the check below would prove nothing", peer)
		}
	}

	// n3's machine is gone, then its Node is deleted.
	if err := l.StopAgent("n3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// n1's agent is down meanwhile and misses that delete...
	if err := l.StopAgent("n1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// ...while n2's, running, sees it at once.
	forgets(t, l, "n2", n3, mac3)
	if len(traces(t, l, "n1", n3, mac3)) == 0 {
		t.Fatal("n1's datapath changed while its agent was down")
	}
	if err := l.StartAgent("n1"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitAgentReady(ctx, "n1", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	forgets(t, l, "n1", n3, mac3)
	// n1 and n2 still reach each other, and n1 still knows n2.
	if len(traces(t, l, "n1", n2, mac2)) == 0 {
		t.Fatal("n1 lost its routes to n2")
	}
	for _, pair := range [][2]string{{"n1", "n2"}, {"n2", "n1"}} {
		r, err := lab.Ping(ctx, labtest.PodOn(t, l, pair[0]).Netns, labtest.PodOn(t, l, pair[1]).IP, 3, 100*time.Millisecond, 2*time.Second)
		if err != nil || r.Lost() != 0 {
			t.Fatalf("%s → %s after the delete: %+v, %v", pair[0], pair[1], r, err)
		}
	}
}

// controlPlaneOutage stops etcd, kube-apiserver and the controller-manager
// for 30 s: pods keep talking without a packet lost and no node's kernel
// state changes; when the control plane is back, the agents carry on (a
// new node joins and every pod reaches it).
func controlPlaneOutage(t *testing.T, l *lab.Lab) {
	labtest.DatastoreOutage(t, l)
	start := time.Now()
	n, err := l.JoinNode(context.Background(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	fullMatrix(t, l)
	t.Logf("node %s joined after the outage, full matrix after %s", n.Name, time.Since(start).Round(time.Millisecond))
}

func fullMatrix(t *testing.T, l *lab.Lab) {
	t.Helper()
	labtest.FullMatrix(t, l, 30*time.Second)
}
