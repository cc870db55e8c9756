package kube

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A `--datastore kubernetes` lab plays kubelet for Pod objects bound to
// its nodes: driven with `weft lab kubectl` alone, a Pod gets a namespace
// attached by weft-cni, its status, and an echo on each containerPort;
// NetworkPolicy applies to it; deleting it removes its namespace and
// releases its address.
func TestKubeLabPodSync(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	cfg := labtest.Config(t, "wlp")
	cfg.Datastore, cfg.Nodes, cfg.PodsPerNode = "kubernetes", 2, 1
	// The echo servers run in the pods' namespaces: once the lab is down
	// (the cleanup below runs after labtest's), none may be left.
	var servers []int
	t.Cleanup(func() {
		for _, pid := range servers {
			if running(pid) {
				t.Errorf("echo server %d still runs after lab down", pid)
			}
		}
	})
	start := time.Now()
	l := labtest.Up(t, cfg)
	t.Logf("lab %s up in %s", l.Name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(l.Dir, "podsync.log"))
			t.Logf("pod sync log:\n%s", labtest.Tail(string(b), 40))
		}
	})
	ns := strings.Replace(uniq("ns"), "wtk-", "wlp-", 1)
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		weft, err := testbin.Path("weft")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(weft, append([]string{"lab", "kubectl", "--name", l.Name}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("weft lab kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	kubectl("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n", "apply", "-f", "-")
	// Pods are refused until the controller-manager made the namespace's
	// default ServiceAccount.
	testnet.Eventually(t, 30*time.Second, "default ServiceAccount in "+ns, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	kubectl(podManifest(ns, "a", "n1")+"---\n"+podManifest(ns, "b", "n2"), "apply", "-f", "-")
	start = time.Now()

	pods := map[string]*corev1.Pod{}
	testnet.Eventually(t, 30*time.Second, "pods a and b Running and Ready with an address", func() error {
		for _, name := range []string{"a", "b"} {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || !ready(p) {
				return fmt.Errorf("pod %s: phase %s, podIP %q, conditions %v", name, p.Status.Phase, p.Status.PodIP, p.Status.Conditions)
			}
			pods[name] = p
		}
		return nil
	})
	t.Logf("pods a and b applied → Running: %s", time.Since(start).Round(time.Millisecond))
	listed := run(t, "ip", "netns", "list")
	for name, node := range map[string]string{"a": "n1", "b": "n2"} {
		p, n := pods[name], node
		nd, err := l.Node(n)
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr(p.Status.PodIP)
		if !nd.Subnet.Contains(ip) || len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
			t.Errorf("pod %s: podIP %s, podIPs %v: want one address in %s's subnet %s", name, ip, p.Status.PodIPs, n, nd.Subnet)
		}
		if p.Status.HostIP != nd.UnderlayIP.String() {
			t.Errorf("pod %s: hostIP %s, want %s", name, p.Status.HostIP, nd.UnderlayIP)
		}
		if want := podNetns(l, n, ns, name); !strings.Contains(listed, want) {
			t.Errorf("namespace %s of pod %s not in `ip netns list`:\n%s", want, name, listed)
		}
		servers = append(servers, echoServersIn(t, podNetns(l, n, ns, name))...)
	}
	if len(servers) != 2 {
		t.Errorf("processes in the pods' namespaces: %v, want one echo server each", servers)
	}
	bServers := echoServersIn(t, podNetns(l, "n2", ns, "b"))
	// The agent's own Pod is host-network: Running on its node's address.
	n1, _ := l.Node("n1")
	testnet.Eventually(t, 10*time.Second, "host-network pod weft-n1 Running on n1's address", func() error {
		p, err := cs.CoreV1().Pods("kube-system").Get(ctx, "weft-n1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP != n1.UnderlayIP.String() {
			return fmt.Errorf("phase %s, podIP %q; want Running on %s", p.Status.Phase, p.Status.PodIP, n1.UnderlayIP)
		}
		return nil
	})

	from := podNetns(l, "n1", ns, "a")
	b := pods["b"].Status.PodIP
	targets := []string{b + ":80/tcp", b + ":81/udp"}
	expect := func(what, want string) {
		t.Helper()
		start := time.Now()
		defer func() { t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond)) }()
		testnet.Eventually(t, 20*time.Second, what, func() error {
			got := probe(t, from, targets)
			for _, tg := range targets {
				if !strings.Contains(got, tg+" "+want+"\n") {
					return fmt.Errorf("a → %s: want %s, got:\n%s", tg, want, got)
				}
			}
			return nil
		})
	}
	expect("a reaches b's echo on 80/tcp and 81/udp", "ok")

	kubectl(denyIngress(ns), "apply", "-f", "-")
	expect("default-deny ingress cuts a → b", "fail")
	kubectl("", "delete", "networkpolicy", "-n", ns, "deny-ingress")
	expect("a reaches b again once the policy is gone", "ok")

	// A graceful delete: the lab removes the namespace and releases the
	// address before the Pod goes.
	start = time.Now()
	kubectl("", "delete", "pod", "-n", ns, "b", "--timeout=30s")
	t.Logf("kubectl delete pod b returned after %s", time.Since(start).Round(time.Millisecond))
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod b after delete: %v", err)
	}
	if gone := podNetns(l, "n2", ns, "b"); netns.Exists(gone) {
		t.Errorf("namespace %s left after pod b was deleted", gone)
	}
	n2, _ := l.Node("n2")
	if leased(t, n2, netip.MustParseAddr(b)) {
		t.Errorf("address %s of deleted pod b still leased on n2", b)
	}
	for _, pid := range bServers {
		if running(pid) {
			t.Errorf("pod b's echo server %d still runs after its delete", pid)
		}
	}
	if !netns.Exists(from) {
		t.Errorf("pod a's namespace %s went with b's", from)
	}

	// A node that leaves the lab takes its pods' namespaces with it.
	kubectl(podManifest(ns, "c", "n2"), "apply", "-f", "-")
	testnet.Eventually(t, 30*time.Second, "pod c Running on n2", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "c", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	cNS := podNetns(l, "n2", ns, "c")
	if err := l.RemoveNode(ctx, "n2"); err != nil {
		t.Fatalf("remove node n2: %v", err)
	}
	testnet.Eventually(t, 20*time.Second, "pod c's namespace gone with node n2", func() error {
		if netns.Exists(cNS) {
			return fmt.Errorf("namespace %s still there", cNS)
		}
		return nil
	})
	if !netns.Exists(from) {
		t.Errorf("pod a's namespace %s went with node n2", from)
	}
}

func podNetns(l *lab.Lab, node, ns, name string) string {
	return l.Name + "-" + node + "-" + ns + "." + name
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podManifest is a Pod on node declaring 80/TCP and 81/UDP, named as the
// NetworkPolicy e2e tests name them.
func podManifest(ns, name, node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels:
    pod: %s
spec:
  nodeName: %s
  automountServiceAccountToken: false
  containers:
  - name: echo
    image: weft.dev/lab/netcheck:v1
    ports:
    - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
    - {name: serve-81-udp, containerPort: 81, protocol: UDP}
`, name, ns, name, node)
}

func denyIngress(ns string) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-ingress
  namespace: %s
spec:
  podSelector: {}
  policyTypes: [Ingress]
`, ns)
}

// probe runs `netcheck probe` (each target bounded by 1 s) inside the
// named namespace, keeping the mount namespace (nsenter, not ip netns exec).
func probe(t *testing.T, nsName string, targets []string) string {
	t.Helper()
	nc, err := testbin.Path("netcheck")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--net=" + netns.Path(nsName), "--", nc, "probe", "--timeout", "1s"}, targets...)
	return run(t, "nsenter", args...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// leased reports whether node n's plugin holds a lease on ip.
func leased(t *testing.T, n *lab.NodeState, ip netip.Addr) bool {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(n.DataDir(), "ipam", "*"))
	if len(dirs) == 0 {
		t.Fatalf("no ipam store under %s", n.DataDir())
	}
	for _, d := range dirs {
		ls, err := ipam.OpenForRelease(d).Leases()
		if err != nil {
			t.Fatalf("leases in %s: %v", d, err)
		}
		for _, l := range ls {
			if l.Addr == ip {
				return true
			}
		}
	}
	return false
}

// echoServersIn lists the netcheck servers whose network namespace is
// the named one. (Other processes pass through a pod's namespace for a
// moment: a Go program that enters it on its main thread shows it as its
// own while it is there.)
func echoServersIn(t *testing.T, nsName string) []int {
	t.Helper()
	var want syscall.Stat_t
	if err := syscall.Stat(netns.Path(nsName), &want); err != nil {
		t.Fatal(err)
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) > 1 && filepath.Base(argv[0]) == "netcheck" && argv[1] == "serve" {
			pids = append(pids, pid)
		}
	}
	return pids
}
