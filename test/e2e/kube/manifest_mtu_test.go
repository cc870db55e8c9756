package kube

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/testkit/testnet"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/internal/testkit/testbin"
)

// agentCommand is the weft container's command as kubelet would run it on
// node: its env resolved from the ConfigMap and the pod, and $(VAR)
// references expanded.
func agentCommand(t *testing.T, c corev1.Container, node string) []string {
	t.Helper()
	cs := admin(t)
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env[e.Name] = node
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP":
			env[e.Name] = "192.0.2.10" // TEST-NET-1: the agent refuses the MTU before it uses the address
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(context.Background(), ref.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				t.Fatalf("env %s: ConfigMap %s has no key %q", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		default:
			t.Fatalf("env %s: a source this test does not resolve: %+v", e.Name, e.ValueFrom)
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var out []string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		out = append(out, ref.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := env[m[2:len(m)-1]]; ok {
				return v
			}
			return m // kubelet leaves an unknown reference as it is
		}))
	}
	return out
}

// The ConfigMap's mtu key reaches `weft agent --mtu`: set to a value the
// agent refuses, the DaemonSet's own command line makes the real binary
// refuse it by name, before it touches anything. (That --mtu sets the
// node state, bridge and pods' MTU is tested in internal/agent.)
func TestManifestMTUReachesTheAgent(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	ds := applyManifest(t)
	var weft *corev1.Container
	for i, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "weft" {
			weft = &ds.Spec.Template.Spec.Containers[i]
		}
	}
	if weft == nil {
		t.Fatal("the DaemonSet has no weft container")
	}
	node := uniq("mtu")

	cmd := agentCommand(t, *weft, node)
	if !slices.Contains(cmd, "--mtu=0") {
		t.Fatalf("with the manifest's ConfigMap the agent runs %q, without --mtu=0", cmd)
	}
	if _, err := admin(t).CoreV1().ConfigMaps("kube-system").Patch(context.Background(), "weft-config",
		types.MergePatchType, []byte(`{"data":{"mtu":"500"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cmd = agentCommand(t, *weft, node)
	if cmd[0] != "/weft" || cmd[1] != "agent" {
		t.Fatalf("agent command %q", cmd)
	}
	bin, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, cmd[1:]...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--mtu 500: the pod MTU must be at least 576") {
		t.Fatalf("weft %s: %v, want the agent to refuse MTU 500 by name; said:\n%s", strings.Join(cmd[1:], " "), err, out)
	}
	t.Logf("with mtu: \"500\" in weft-config the agent says: %s", strings.TrimSpace(string(out)))
}
