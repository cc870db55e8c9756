// Package kubelet tests Weft on real Kubernetes nodes: a lab whose nodes
// run kubelet and containerd (`weft lab up --kubelet`), Weft installed
// from deploy/weft.yaml as shipped, pods made by kubelet through the CRI
// and weft-cni, traffic between them across nodes (also while the
// DaemonSet rolls to a new image), their deletion releasing every
// address, and `weft lab down` leaving nothing behind.
package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/images"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

func manifest(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "weft.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func kubectl(t *testing.T, l *lab.Lab, args ...string) (string, error) {
	t.Helper()
	cmd, err := l.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func TestWeftFromItsManifestOnKubeletNodes(t *testing.T) {
	testnet.RequireRoot(t, "runs kubelet, containerd and lab namespaces")
	cfg := labtest.Config(t, "kl")
	cfg.Kubelet, cfg.Nodes = true, 2
	cfg.ReadyTimeout = 3 * time.Minute
	// Registered first, so that it runs after the lab is down.
	hostDirsBefore := existing()
	t.Cleanup(func() { assertNodesGone(t, cfg.Name, hostDirsBefore) })

	start := time.Now()
	l := labtest.Up(t, cfg)
	t.Logf("up --kubelet → %d nodes registered: %s", len(l.Nodes), time.Since(start).Round(time.Millisecond))
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
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				t.Errorf("node %s is Ready before any network is installed", n.Name)
			}
		}
	}

	// The operator's way in: `weft lab kubectl`.
	labBin, err := testbin.Path("weft-lab")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(labBin, "lab", "kubectl", "--name", cfg.Name, "get", "nodes", "-o", "name").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node/n1") || !strings.Contains(string(out), "node/n2") {
		t.Errorf("weft lab kubectl get nodes: %v\n%s", err, out)
	}

	// The nodes have the OS's portmap, which speaks CNI up to 1.0.0.
	nodePortmap := seedNodePortmaps(t, l)
	applied := time.Now()
	if out, err := kubectl(t, l, "apply", "-f", manifest(t)); err != nil {
		t.Fatalf("kubectl apply -f deploy/weft.yaml: %v\n%s", err, out)
	}
	if err := l.WaitNodesReady(ctx, 3*time.Minute); err != nil {
		logPods(t, l)
		t.Fatal(err)
	}
	testnet.Eventually(t, 2*time.Minute, "weft DaemonSet ready on every node", func() error {
		ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "weft", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ds.Status.NumberReady != int32(len(l.Nodes)) {
			return fmt.Errorf("%d of %d weft pods ready", ds.Status.NumberReady, len(l.Nodes))
		}
		return nil
	})
	t.Logf("apply → all nodes Ready and weft pods Ready: %s", time.Since(applied).Round(time.Millisecond))
	t.Run("chain offers CNI 1.1.0", func(t *testing.T) { chainOffers110(t, l, nodePortmap) })

	// The node's own veths (its underlay link) before any pod.
	baseline := map[string]string{}
	for _, n := range l.Nodes {
		baseline[n.Name] = fmt.Sprint(veths(t, n.Netns))
	}
	created := time.Now()
	pods := netcheckPods(t, cs, len(l.Nodes))
	var first time.Duration
	for _, a := range pods {
		for _, b := range pods {
			if a.Spec.NodeName == b.Spec.NodeName {
				continue
			}
			for _, udp := range []bool{false, true} {
				args := []string{"exec", "-n", "default", a.Name, "--", "/netcheck", "connect"}
				if udp {
					args = append(args, "--udp")
				}
				args = append(args, b.Status.PodIP+":8080")
				if out, err := kubectl(t, l, args...); err != nil {
					t.Errorf("%s (%s) → %s (%s) udp=%v: %v\n%s", a.Name, a.Spec.NodeName, b.Name, b.Spec.NodeName, udp, err, out)
				} else if first == 0 {
					first = time.Since(created)
				}
			}
		}
	}
	t.Logf("netcheck pods created → first echo answered across nodes: %s", first.Round(time.Millisecond))
	logRSS(t, l)

	rollingUpdate(t, l, cs, pods)

	for _, n := range l.Nodes {
		if leases(t, n) == 0 {
			t.Errorf("no lease on %s while its netcheck pod runs", n.Name)
		}
	}
	// Deleting the pods goes through kubelet, the CRI and weft-cni's DEL:
	// no veth and no lease may stay on any node.
	if err := cs.AppsV1().Deployments("default").Delete(ctx, "netcheck", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 2*time.Minute, "netcheck pods gone, with their veths and leases", func() error {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=netcheck"})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("pods left: %s", podPhases(list.Items))
		}
		for _, n := range l.Nodes {
			if v := fmt.Sprint(veths(t, n.Netns)); v != baseline[n.Name] {
				return fmt.Errorf("veths on %s: %s, before the pods %s", n.Name, v, baseline[n.Name])
			}
			if k := leases(t, n); k > 0 {
				return fmt.Errorf("%d leases left on %s", k, n.Name)
			}
		}
		return nil
	})

	uninstall(t, l, cs)
}

// uninstall removes Weft as the README says: `kubectl delete -f
// deploy/weft.yaml`, then `weft uninstall` on each node from Weft's image
// through `kubectl debug node/NODE --profile=sysadmin`. The nodes must then
// hold nothing of Weft's: no bridge, VXLAN device, route of Weft's
// protocol, nftables table, CNI config, plugin or directory; the node's
// own portmap stays.
func uninstall(t *testing.T, l *lab.Lab, cs kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	if out, err := kubectl(t, l, "delete", "--wait=true", "-f", manifest(t)); err != nil {
		t.Fatalf("kubectl delete -f deploy/weft.yaml: %v\n%s", err, out)
	}
	testnet.Eventually(t, 2*time.Minute, "weft pods gone", func() error {
		list, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=weft"})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("weft pods left: %s", podPhases(list.Items))
		}
		return nil
	})
	image, err := images.WeftImage()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		out, err := kubectl(t, l, "debug", "node/"+n.Name, "--profile=sysadmin", "--image="+image, "--",
			"/weft", "uninstall", "--cni-bin-dir=/host/opt/cni/bin", "--cni-conf-dir=/host/etc/cni/net.d",
			"--data-dir=/host/var/lib/weft", "--run-dir=/host/run/weft")
		if err != nil {
			t.Fatalf("kubectl debug node/%s: %v\n%s", n.Name, err, out)
		}
	}
	testnet.Eventually(t, 2*time.Minute, "node debugger pods done", func() error {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		done := 0
		for _, p := range list.Items {
			if !strings.HasPrefix(p.Name, "node-debugger-") {
				continue
			}
			switch p.Status.Phase {
			case corev1.PodSucceeded:
				done++
			case corev1.PodFailed:
				out, _ := kubectl(t, l, "logs", p.Name)
				t.Fatalf("weft uninstall in %s failed:\n%s", p.Name, out)
			}
		}
		if done != len(l.Nodes) {
			return fmt.Errorf("%d of %d uninstalls done: %s", done, len(l.Nodes), podPhases(list.Items))
		}
		return nil
	})
	for _, n := range l.Nodes {
		if left := weftLeftOn(t, n); len(left) > 0 {
			t.Errorf("after uninstall, node %s still has: %s", n.Name, strings.Join(left, "; "))
		}
		if _, err := os.Stat(filepath.Join(n.KubeletHostPath("/opt/cni/bin"), "portmap")); err != nil {
			t.Errorf("uninstall removed node %s's own portmap: %v", n.Name, err)
		}
	}
}

// handleIn is a netlink handle on the named namespace.
func handleIn(t *testing.T, nsName string) *netlink.Handle {
	t.Helper()
	h, err := vnetns.GetFromName(nsName)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close() // the handle keeps its own socket in the namespace
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	return nl
}

// weftLeftOn lists what Weft made that is still on node n.
func weftLeftOn(t *testing.T, n *lab.NodeState) []string {
	t.Helper()
	var left []string
	nl := handleIn(t, n.Netns)
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if name := l.Attrs().Name; strings.HasPrefix(name, "weft") {
			left = append(left, "link "+name)
		}
	}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Protocol == 87 {
			left = append(left, "route "+r.String())
		}
	}
	out, err := exec.Command("nsenter", "--net=/run/netns/"+n.Netns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v\n%s", n.Netns, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Weft's tables (the lab's own weft-lab-apiservice is not Weft's).
		if f := strings.Fields(line); len(f) == 3 && (f[2] == "weft" || f[2] == "weft-policy") {
			left = append(left, line)
		}
	}
	for _, p := range []string{"/etc/cni/net.d/10-weft.conflist", "/opt/cni/bin/weft-cni", "/opt/cni/bin/weft-portmap", "/var/lib/weft/node.json", "/var/lib/weft/ipam", "/run/weft/weft.sock"} {
		dir, base := filepath.Split(p)
		if _, err := os.Stat(filepath.Join(n.KubeletHostPath(filepath.Clean(dir)), base)); err == nil {
			left = append(left, "file "+p)
		}
	}
	return left
}

// veths lists the veth interfaces in the named namespace: the node's
// underlay link and each pod's host end.
func veths(t *testing.T, nsName string) []string {
	nl := handleIn(t, nsName)
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var v []string
	for _, l := range links {
		if l.Type() == "veth" {
			v = append(v, l.Attrs().Name)
		}
	}
	return v
}

// leases counts the addresses weft-cni holds on node n, in its
// /var/lib/weft (the manifest's data directory).
func leases(t *testing.T, n *lab.NodeState) int {
	dirs, _ := filepath.Glob(filepath.Join(n.KubeletHostPath("/var/lib/weft"), "ipam", "*"))
	total := 0
	for _, d := range dirs {
		ls, err := ipam.OpenForRelease(d).Leases()
		if err != nil {
			t.Fatalf("leases in %s: %v", d, err)
		}
		total += len(ls)
	}
	return total
}

// netcheckPods runs a Deployment of n netcheck pods, one per node, and
// returns them once Ready, each checked to hold an address of its node's
// podCIDR.
func netcheckPods(t *testing.T, cs kubernetes.Interface, n int) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "netcheck"}
	replicas := int32(n)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "netcheck", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "netcheck", Image: images.NetcheckImage, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
					// One pod per node: the checks cross nodes.
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
							TopologyKey:   "kubernetes.io/hostname",
						}},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	testnet.Eventually(t, 2*time.Minute, "netcheck pods Ready", func() error {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=netcheck"})
		if err != nil {
			return err
		}
		pods = nil
		for _, p := range list.Items {
			if podReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) != n {
			return fmt.Errorf("%d of %d ready: %s", len(pods), n, podPhases(list.Items))
		}
		return nil
	})
	for _, p := range pods {
		node, err := cs.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cidr, err1 := netip.ParsePrefix(node.Spec.PodCIDR)
		ip, err2 := netip.ParseAddr(p.Status.PodIP)
		if err1 != nil || err2 != nil || !cidr.Contains(ip) {
			t.Errorf("pod %s on %s has %q, not in the node's podCIDR %q", p.Name, p.Spec.NodeName, p.Status.PodIP, node.Spec.PodCIDR)
		}
	}
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podPhases(ps []corev1.Pod) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name+"="+string(p.Status.Phase))
	}
	return strings.Join(s, " ")
}

func logPods(t *testing.T, l *lab.Lab) {
	out, _ := kubectl(t, l, "get", "pods", "-A", "-o", "wide")
	t.Logf("pods:\n%s", out)
	out, _ = kubectl(t, l, "describe", "pods", "-n", "kube-system")
	t.Logf("kube-system pods:\n%s", labtest.Tail(out, 60))
	for _, n := range l.Nodes {
		b, _ := os.ReadFile(filepath.Join(n.Dir, "k8s", "kubelet.log"))
		t.Logf("kubelet log of %s:\n%s", n.Name, labtest.Tail(string(b), 30))
	}
}

// logRSS logs the memory each node costs: kubelet, containerd, the agent.
func logRSS(t *testing.T, l *lab.Lab) {
	for _, n := range l.Nodes {
		var parts []string
		for _, p := range processesIn(n.Netns) {
			parts = append(parts, fmt.Sprintf("%s %d MB", p.name, p.rssKB/1024))
		}
		t.Logf("node %s RSS: %s", n.Name, strings.Join(parts, ", "))
	}
}

type procRSS struct {
	name  string
	rssKB int
}

// processesIn lists kubelet, containerd and the weft agent in the named
// network namespace with their resident memory.
func processesIn(nsName string) []procRSS {
	st1, err := os.Stat("/run/netns/" + nsName)
	if err != nil {
		return nil
	}
	var out []procRSS
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st2, err := os.Stat("/proc/" + e.Name() + "/ns/net")
		if err != nil || !os.SameFile(st1, st2) {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		name := strings.TrimSpace(string(comm))
		if name != "kubelet" && name != "containerd" && name != "weft" {
			continue
		}
		status, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				out = append(out, procRSS{name, kb})
			}
		}
	}
	return out
}

// existing is which of the node mount points the host has.
func existing() map[string]bool {
	m := map[string]bool{}
	for _, p := range lab.NodeHostPaths() {
		if _, err := os.Stat(p); err == nil {
			m[p] = true
		}
	}
	return m
}

// assertNodesGone checks what lab.Down must remove beyond the lab's
// namespaces, directory and processes (labtest checks those): the nodes'
// cgroups (so no container process either), and the mount points it
// created on the host.
func assertNodesGone(t *testing.T, name string, before map[string]bool) {
	for _, h := range []string{"cpu", "cpuacct", "memory", "pids", "cpuset", "systemd", "freezer", "devices", "blkio", "unified"} {
		if m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, name+"-*")); len(m) > 0 {
			t.Errorf("cgroups left: %v", m)
		}
	}
	if other, _ := filepath.Glob(filepath.Join(lab.RootDir, "*", "kubelet")); len(other) > 0 {
		return // another kubelet lab still uses the mount points
	}
	for p := range existing() {
		if !before[p] {
			t.Errorf("mount point %s left on the host", p)
		}
	}
}

// rollingUpdate moves the weft DaemonSet to a new image tag while the
// pods keep talking: every check across nodes during the rollout must
// get its echo (the datapath stays while an agent restarts).
func rollingUpdate(t *testing.T, l *lab.Lab, cs kubernetes.Interface, pods []corev1.Pod) {
	t.Helper()
	const ref = "weftnet/weft:rollout"
	if err := l.ImportWeftImage(ref); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(t, l, "-n", "kube-system", "set", "image", "daemonset/weft", "weft="+ref, "install-cni="+ref); err != nil {
		t.Fatalf("set image: %v\n%s", err, out)
	}
	ctx := context.Background()
	done := func() bool {
		ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "weft", metav1.GetOptions{})
		if err != nil {
			return false
		}
		st := ds.Status
		return st.ObservedGeneration >= ds.Generation && st.UpdatedNumberScheduled == st.DesiredNumberScheduled &&
			st.NumberReady == st.DesiredNumberScheduled && st.NumberUnavailable == 0
	}
	a, b := pods[0], pods[1]
	deadline := time.Now().Add(3 * time.Minute)
	checks := 0
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("weft DaemonSet not rolled out to %s within 3m", ref)
		}
		if out, err := kubectl(t, l, "exec", a.Name, "--", "/netcheck", "connect", b.Status.PodIP+":8080"); err != nil {
			t.Errorf("during the rollout, %s → %s: %v\n%s", a.Name, b.Name, err, out)
		}
		checks++
	}
	t.Logf("rolled out %s; %d checks across nodes during the rollout", ref, checks)
	if out, err := kubectl(t, l, "exec", a.Name, "--", "/netcheck", "connect", b.Status.PodIP+":8080"); err != nil {
		t.Errorf("after the rollout, %s → %s: %v\n%s", a.Name, b.Name, err, out)
	}
}
