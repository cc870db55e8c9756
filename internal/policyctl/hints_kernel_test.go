package policyctl

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A pod whose status has no address yet gets its verdicts in the kernel
// from the plugin's ADD alone; they stay when the status brings the same
// address, and the DEL of a pod that never got one takes them away.
func TestAddressHintReachesTheKernel(t *testing.T) {
	n := testnet.NewNS(t, "wphint")
	t.Setenv("KUBE_FEATURE_WatchListClient", "false") // see TestControllerEnforcesWhatTheClusterSays
	deny := object("networking.k8s.io/v1", "NetworkPolicy", "x", "deny", map[string]any{
		"spec": map[string]any{"podSelector": map[string]any{}}})
	starting := pod("new", "")
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvrPods: "PodList", gvrNamespaces: "NamespaceList", gvrPolicies: "NetworkPolicyList"},
		object("v1", "Namespace", "", "x", nil), pod("a", "10.244.1.11"), starting, deny)
	ctl, err := New(Config{Client: client, NodeName: "n1", NodeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ProcSysNet: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Do(func(ns.NetNS) error { return ctl.Run(ctx) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		n.Run(t, func() error { _, err := netpolnft.Remove(); return err })
	}()
	addr := netip.MustParseAddr("10.244.1.12")
	enforced := func(what string, want bool) {
		t.Helper()
		testnet.Eventually(t, 10*time.Second, what, func() error {
			st, err := ctl.State()
			if err != nil || st == nil {
				return fmt.Errorf("state %v, err %v", st, err)
			}
			_, isolated := st.Ingress[addr]
			if known := slices.Contains(st.Known, addr); known != want || isolated != want {
				return fmt.Errorf("%s known %v, isolated %v; want %v", addr, known, isolated, want)
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
	enforced("x/a isolated, x/new without verdicts", false)

	add := cnievents.Pod{Namespace: "x", Name: "new", ContainerID: "c-new", IP: addr.String()}
	ctl.CNIEvent(cnievents.Event{Verb: "ADD", OK: true, Pod: &add})
	enforced("x/new's verdicts from its ADD", true)

	// The status brings the address: nothing changes.
	withIP := pod("new", addr.String())
	if _, err := client.Resource(gvrPods).Namespace("x").Update(ctx, withIP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, "the status replaces the hint", func() error {
		ctl.cl.mu.Lock()
		defer ctl.cl.mu.Unlock()
		if p := ctl.cl.pods["x/new"]; p.IP != addr || len(ctl.cl.hints) != 0 {
			return fmt.Errorf("x/new %v, hints %v", p.IP, ctl.cl.hints)
		}
		return nil
	})
	enforced("x/new's verdicts from its status", true)

	// Another pod starting, then deleted before its status had an address.
	if _, err := client.Resource(gvrPods).Namespace("x").Create(ctx, pod("short", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr = netip.MustParseAddr("10.244.1.13")
	short := cnievents.Pod{Namespace: "x", Name: "short", ContainerID: "c-short", IP: addr.String()}
	ctl.CNIEvent(cnievents.Event{Verb: "ADD", OK: true, Pod: &short})
	enforced("x/short's verdicts from its ADD", true)
	short.IP = ""
	ctl.CNIEvent(cnievents.Event{Verb: "DEL", OK: true, Pod: &short})
	enforced("x/short's verdicts gone at its DEL", false)
}
