package policyctl

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

func object(apiVersion, kind, namespace, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	for k, v := range fields {
		u.Object[k] = v
	}
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

func pod(name, ip string) *unstructured.Unstructured {
	return object("v1", "Pod", "x", name, map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"pod": name}},
		"spec":     map[string]any{"nodeName": "n1"},
		"status":   map[string]any{"phase": "Running", "podIP": ip},
	})
}

// The controller follows the API: it applies nothing before the cluster
// is listed, then the compiled State of every change; Check finds the
// kernel equal to it. (The dynamic client is client-go's fake: the watch
// semantics are client-go's own; a real API server drives the same code
// in the lab.)
func TestControllerEnforcesWhatTheClusterSays(t *testing.T) {
	n := testnet.NewNS(t, "npctl")
	// client-go's fake does not stream a watch's initial list (no
	// bookmark), which client-go's reflector expects by default.
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	deny := object("networking.k8s.io/v1", "NetworkPolicy", "x", "deny", map[string]any{
		"spec": map[string]any{"podSelector": map[string]any{}}})
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvrPods: "PodList", gvrNamespaces: "NamespaceList", gvrPolicies: "NetworkPolicyList"},
		object("v1", "Namespace", "", "x", nil), pod("a", "10.244.1.11"), pod("b", "10.244.1.12"), deny)
	// A node without br_netfilter: same-node traffic bypasses the policy
	// table, and the operator is told through the report, not only the log.
	var reportMu sync.Mutex
	var reported []string
	ctl, err := New(Config{Client: client, NodeName: "n1", NodeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ProcSysNet: t.TempDir(),
		Report: func(p string) { reportMu.Lock(); reported = append(reported, p); reportMu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The loop applies on this goroutine, whose thread Do keeps in
		// the namespace; the informers' goroutines never touch the kernel.
		done <- n.Do(func(ns.NetNS) error { return ctl.Run(ctx) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		n.Run(t, func() error { _, err := netpolnft.Remove(); return err })
	}()

	enforced := func(what string, ok func() error) {
		t.Helper()
		testnet.Eventually(t, 10*time.Second, what, func() error {
			st, err := ctl.State()
			if err != nil || st == nil {
				return fmt.Errorf("state %v, err %v", st, err)
			}
			if err := ok(); err != nil {
				return err
			}
			var drift []string
			n.Run(t, func() (err error) {
				drift, err = netpolnft.Check(st)
				return err
			})
			if len(drift) > 0 {
				return fmt.Errorf("drift: %s", strings.Join(drift, "; "))
			}
			return nil
		})
	}
	enforced("x's pods isolated", func() error {
		st, _ := ctl.State()
		if len(st.Ingress) != 2 || !st.Guarded {
			return fmt.Errorf("ingress %v", st.Ingress)
		}
		return nil
	})
	reportMu.Lock()
	if len(reported) == 0 || !strings.Contains(reported[len(reported)-1], "br_netfilter") {
		t.Errorf("reports %q: want the missing br_netfilter named", reported)
	}
	reportMu.Unlock()

	pods := client.Resource(gvrPods).Namespace("x")
	if _, err := pods.Create(ctx, pod("c", "10.244.1.13"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	enforced("a new pod is known and isolated", func() error {
		st, _ := ctl.State()
		if _, ok := st.Ingress[netip.MustParseAddr("10.244.1.13")]; !ok {
			return fmt.Errorf("ingress %v", st.Ingress)
		}
		return nil
	})

	if err := client.Resource(gvrPolicies).Namespace("x").Delete(ctx, "deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	enforced("no policy: everything open", func() error {
		st, _ := ctl.State()
		if len(st.Ingress) != 0 || st.Guarded {
			return fmt.Errorf("ingress %v guarded %v", st.Ingress, st.Guarded)
		}
		return nil
	})
}
