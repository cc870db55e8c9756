package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/lab/controlplane"
)

func manifestPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "weft.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// kubectl runs the real kubectl against the shared control plane as admin.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	bins, err := controlplane.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bins, controlplane.Kubectl), append([]string{"--kubeconfig", controlPlane.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// applyManifest applies deploy/weft.yaml as a user would, and removes what
// it made when the test ends.
func applyManifest(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	m := manifestPath(t)
	out := kubectl(t, "apply", "-f", m)
	t.Cleanup(func() {
		bins, _ := controlplane.Binaries()
		exec.Command(filepath.Join(bins, controlplane.Kubectl), "--kubeconfig", controlPlane.Kubeconfig,
			"delete", "--ignore-not-found", "--wait=false", "-f", m).Run()
	})
	for _, want := range []string{"serviceaccount/weft", "clusterrole.rbac.authorization.k8s.io/weft",
		"clusterrolebinding.rbac.authorization.k8s.io/weft", "configmap/weft-config", "daemonset.apps/weft",
		"validatingadmissionpolicy.admissionregistration.k8s.io/weft-own-node",
		"validatingadmissionpolicybinding.admissionregistration.k8s.io/weft-own-node"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kubectl apply did not make %s:\n%s", want, out)
		}
	}
	ds, err := admin(t).AppsV1().DaemonSets("kube-system").Get(context.Background(), "weft", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// `kubectl apply -f deploy/weft.yaml` is accepted by a real API server,
// applying it again (an upgrade) changes nothing, and the DaemonSet's pod
// template makes a Pod that passes the API server's validation and
// admission in kube-system (priority class, service account, host paths).
func TestManifestApplies(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	ds := applyManifest(t)
	// An upgrade with the same manifest changes nothing: the server's
	// dry run of applying it again differs from nothing it holds.
	bins, _ := controlplane.Binaries()
	diff := exec.Command(filepath.Join(bins, controlplane.Kubectl), "--kubeconfig", controlPlane.Kubeconfig, "diff", "-f", manifestPath(t))
	if out, err := diff.CombinedOutput(); err != nil {
		t.Fatalf("kubectl diff after apply: %v\n%s", err, out)
	}
	kubectl(t, "apply", "-f", manifestPath(t))

	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.ServiceAccountName != "weft" {
		t.Fatalf("pod spec: hostNetwork %v, priority %q, sa %q", spec.HostNetwork, spec.PriorityClassName, spec.ServiceAccountName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Fatalf("tolerations %+v do not tolerate every taint", spec.Tolerations)
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Fatalf("update strategy %s", ds.Spec.UpdateStrategy.Type)
	}
	if len(spec.InitContainers) != 1 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "install-cni") {
		t.Fatalf("init containers %+v", spec.InitContainers)
	}
	agent := spec.Containers[0]
	if agent.LivenessProbe == nil || agent.LivenessProbe.HTTPGet.Path != "/healthz" ||
		agent.ReadinessProbe == nil || agent.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatalf("probes %+v %+v", agent.LivenessProbe, agent.ReadinessProbe)
	}
	mounts := map[string]bool{}
	for _, v := range spec.Volumes {
		mounts[v.HostPath.Path] = true
	}
	for _, p := range []string{"/opt/cni/bin", "/etc/cni/net.d", "/var/lib/weft", "/run/weft", "/proc/sys/net"} {
		if !mounts[p] {
			t.Fatalf("no host mount of %s", p)
		}
	}
	if len(mounts) != 5 {
		t.Fatalf("host mounts %v: the agent uses five", mounts)
	}
	// The agent asks for what it uses and nothing more.
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("pod security context %+v: want the runtime's default seccomp profile", sc)
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.Privileged != nil && *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Fatalf("container %s: security context %+v", c.Name, sc)
		}
		want := ""
		if c.Name == "weft" {
			want = "NET_ADMIN"
		}
		var got []string
		for _, c := range sc.Capabilities.Add {
			got = append(got, string(c))
		}
		if strings.Join(got, ",") != want {
			t.Fatalf("container %s adds capabilities %v, want %q", c.Name, got, want)
		}
	}

	// The pod the DaemonSet controller would make for a node.
	node := uniq("ds")
	createNode(t, admin(t), node)
	pod := podFromTemplate(ds, node)
	if _, err := admin(t).CoreV1().Pods("kube-system").Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the DaemonSet's pod is refused: %v", err)
	}
}

func podFromTemplate(ds *appsv1.DaemonSet, node string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "weft-",
			Namespace:    "kube-system",
			Labels:       ds.Spec.Template.Labels,
		},
		Spec: *ds.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = node
	return pod
}

// agentToken is what the weft pod on node would authenticate with: a
// token of the manifest's ServiceAccount, bound to a Pod on that node.
func agentToken(t *testing.T, ds *appsv1.DaemonSet, node string) string {
	t.Helper()
	cs := admin(t)
	ctx := context.Background()
	pod, err := cs.CoreV1().Pods("kube-system").Create(ctx, podFromTemplate(ds, node), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the weft pod of %s: %v", node, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		cs.CoreV1().Pods("kube-system").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "weft", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for weft: %v", err)
	}
	return tr.Status.Token
}

// The manifest's RBAC is enough for everything the agent's datastore does
// (with the ServiceAccount's own token, not as admin), and no more.
func TestManifestRBAC(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	ds := applyManifest(t)
	a, b := uniq("a"), uniq("b")
	createNode(t, admin(t), a)
	createNode(t, admin(t), b)
	agentCfg := controlPlane.TokenConfig(agentToken(t, ds, a))
	as, err := kubernetes.NewForConfig(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	who, err := as.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := who.Status.UserInfo.Username; got != "system:serviceaccount:kube-system:weft" {
		t.Fatalf("authenticated as %q", got)
	}

	// Everything the agent does.
	sa, sb := newStore(t, agentCfg, a), newStore(t, controlPlane.RESTConfig(), b)
	la := acquire(t, sa, a)
	publish(t, sa, record(a, la.Subnet, "192.0.2.1"))
	publish(t, sb, record(b, acquire(t, sb, b).Subnet, "192.0.2.2"))
	w := watch(t, sa)
	testnet.Eventually(t, 10*time.Second, "watch with the agent's token", func() error {
		if got := w.names(a, b); got != a+","+b {
			return fmt.Errorf("set %q, store error %v", got, sa.Err())
		}
		return nil
	})
	if _, err := sa.RenewLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	if err := sa.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}

	// And nothing else.
	forbidden := map[string]error{}
	_, forbidden["create a node"] = as.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: uniq("evil")}}, metav1.CreateOptions{})
	forbidden["delete a node"] = as.CoreV1().Nodes().Delete(ctx, b, metav1.DeleteOptions{})
	_, forbidden["patch node status"] = as.CoreV1().Nodes().Patch(ctx, a, types.MergePatchType, []byte(`{"status":{"phase":"x"}}`), metav1.PatchOptions{}, "status")
	_, forbidden["list secrets"] = as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	_, forbidden["patch a configmap"] = as.CoreV1().ConfigMaps("kube-system").Patch(ctx, "weft-config", types.MergePatchType, []byte(`{"data":{"mtu":"1"}}`), metav1.PatchOptions{})
	forbidden["delete a pod"] = as.CoreV1().Pods("kube-system").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, forbidden["patch a namespace"] = as.CoreV1().Namespaces().Patch(ctx, "default", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, forbidden["create a pod"] = as.CoreV1().Pods("kube-system").Create(ctx, podFromTemplate(ds, a), metav1.CreateOptions{})
	_, forbidden["patch the daemonset"] = as.AppsV1().DaemonSets("kube-system").Patch(ctx, "weft", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, forbidden["list leases"] = as.CoordinationV1().Leases("kube-system").List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}

	// RBAC allows patching Nodes; the manifest's admission policy keeps
	// the agent to the Node its pod runs on (the API server loads a new
	// policy within a second or so).
	testnet.Eventually(t, 20*time.Second, "patching another node is refused", func() error {
		_, err := as.CoreV1().Nodes().Patch(ctx, b, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"weft.dev/underlay-ip":"192.0.2.66"}}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})
	// ...while its own Node stays writable.
	publish(t, sa, record(a, la.Subnet, "192.0.2.1"))

	// On its own Node, the agent may touch only Weft's annotations: not
	// labels, taints, schedulability or anyone else's annotations.
	if _, err := admin(t).CoreV1().Nodes().Patch(ctx, a, types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.com/keep":"1"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for what, patch := range map[string]string{
		"a label":              `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`,
		"another annotation":   `{"metadata":{"annotations":{"example.com/owner":"weft"}}}`,
		"a taint":              `{"spec":{"taints":[{"key":"x","effect":"NoSchedule"}]}}`,
		"unschedulable":        `{"spec":{"unschedulable":true}}`,
		"the provider ID":      `{"spec":{"providerID":"evil://1"}}`,
		"a finalizer":          `{"metadata":{"finalizers":["example.com/stay"]}}`,
		"a weft and a foreign": `{"metadata":{"annotations":{"weft.dev/version":"x","example.com/a":"b"}}}`,
		"remove a foreign one": `{"metadata":{"annotations":{"example.com/keep":null}}}`,
	} {
		_, err := as.CoreV1().Nodes().Patch(ctx, a, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("the agent changing %s on its own Node: got %v, want Forbidden", what, err)
		}
	}
	if _, err := as.CoreV1().Nodes().Patch(ctx, a, types.MergePatchType, []byte(`{"metadata":{"annotations":{"weft.dev/version":"test"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("the agent setting a weft.dev annotation on its own Node: %v", err)
	}
}
