package policyctl

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/weftnet/weft/internal/cnievents"
)

var hintCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}

// podObject is a Pod bound to node, with ip in its status ("" for none
// yet) and the given uid.
func podObject(name, node, ip, uid string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"namespace": "x", "name": name, "uid": uid, "labels": map[string]any{"pod": name}},
		"spec":     map[string]any{"nodeName": node},
		"status":   map[string]any{"phase": "Pending", "podIP": ip},
	}
}

func added(name, cid, ip, uid string) cnievents.Pod {
	return cnievents.Pod{Namespace: "x", Name: name, UID: uid, ContainerID: cid, IP: ip}
}

// addrOf is the address the compiler is given for x/name ("" for none).
func addrOf(c *cluster, name string) string {
	for _, p := range c.input("n1", hintCIDRs).Pods {
		if p.Name == name && p.IP.IsValid() {
			return p.IP.String()
		}
	}
	return ""
}

// A hint gives a pod of this node its address until the status has one,
// and only then.
func TestAddressHintRules(t *testing.T) {
	clock := time.Unix(1e9, 0)
	c := newCluster()
	c.now = func() time.Time { return clock }
	hint := func(p cnievents.Pod) string { return c.hint(p, "n1", hintCIDRs) }

	// Used for a pod of this node that has no address yet.
	c.setPod(podObject("a", "n1", "", "ua"))
	if r := hint(added("a", "c-a", "10.244.1.5", "ua")); r != hintAccepted {
		t.Fatalf("hint for x/a: %s", r)
	}
	if got := addrOf(c, "a"); got != "10.244.1.5" {
		t.Fatalf("x/a compiled with %q, want the hinted 10.244.1.5", got)
	}
	// The status wins, even when it says otherwise, and the hint is gone.
	c.setPod(podObject("a", "n1", "10.244.1.9", "ua"))
	if got := addrOf(c, "a"); got != "10.244.1.9" {
		t.Fatalf("x/a with a status address compiled with %q, want 10.244.1.9", got)
	}
	if _, ok := c.hints["x/a"]; ok {
		t.Fatal("the hint outlived the status address")
	}

	// Refused: outside the node's subnets, not IPv4, garbage, a pod of
	// another node, a host-network pod, an address a pod's status claims.
	c.setPod(podObject("far", "n2", "", "uf"))
	hn := podObject("hn", "n1", "", "uh")
	hn["spec"].(map[string]any)["hostNetwork"] = true
	c.setPod(hn)
	for _, tc := range []struct {
		p    cnievents.Pod
		want string
	}{
		{added("b", "c-b", "10.244.2.5", ""), hintOutside},
		{added("b", "c-b", "10.0.0.1", ""), hintOutside},
		{added("b", "c-b", "::ffff:10.244.1.5", ""), hintMalformed},
		{added("b", "c-b", "fd00::5", ""), hintMalformed},
		{added("b", "c-b", "10.244.1", ""), hintMalformed},
		{added("", "c-b", "10.244.1.5", ""), hintMalformed},
		{added("b", "", "10.244.1.5", ""), hintMalformed},
		{added("far", "c-f", "10.244.1.6", "uf"), hintForeignNode},
		{added("hn", "c-h", "10.244.1.6", "uh"), hintHostNetwork},
		{added("b", "c-b", "10.244.1.9", ""), hintAddressTaken}, // x/a's
	} {
		if got := hint(tc.p); got != tc.want {
			t.Errorf("hint %+v: %s, want %s", tc.p, got, tc.want)
		}
	}
	if len(c.hints) != 0 {
		t.Fatalf("refused hints kept: %v", c.hints)
	}

	// A hint for a pod the informer has not shown yet waits for it.
	if r := hint(added("c", "c-c", "10.244.1.6", "uc")); r != hintAccepted {
		t.Fatalf("hint for unseen x/c: %s", r)
	}
	if got := addrOf(c, "c"); got != "" {
		t.Fatalf("unseen x/c compiled with %q", got)
	}
	c.setPod(podObject("c", "", "", "uc")) // not bound yet: not this node's
	if got := addrOf(c, "c"); got != "" {
		t.Fatalf("unbound x/c compiled with %q", got)
	}
	c.setPod(podObject("c", "n1", "", "uc"))
	if got := addrOf(c, "c"); got != "10.244.1.6" {
		t.Fatalf("x/c, bound at last, compiled with %q, want 10.244.1.6", got)
	}
	// An address a pod's status claims later is that pod's, not the hint's.
	c.setPod(podObject("d", "n1", "10.244.1.6", "ud"))
	if got := addrOf(c, "c"); got != "" {
		t.Fatalf("x/c compiled with %q, an address x/d's status claims", got)
	}
	c.deletePod("x", "d")
	if got := addrOf(c, "c"); got != "10.244.1.6" {
		t.Fatalf("x/c compiled with %q after x/d went", got)
	}

	// A DEL of another container leaves the hint; its own drops it.
	if c.forgetHint("x/c", "c-other") || addrOf(c, "c") == "" {
		t.Fatal("a DEL of another container dropped x/c's hint")
	}
	if !c.forgetHint("x/c", "c-c") || addrOf(c, "c") != "" {
		t.Fatal("x/c's DEL left its hint")
	}

	// Deleted pod: the hint goes with it.
	c.setPod(podObject("e", "n1", "", "ue"))
	hint(added("e", "c-e", "10.244.1.7", "ue"))
	c.deletePod("x", "e")
	if _, ok := c.hints["x/e"]; ok {
		t.Fatal("x/e's hint outlived the pod")
	}
	// A pod that ended: likewise.
	c.setPod(podObject("f", "n1", "", "uf2"))
	hint(added("f", "c-f", "10.244.1.8", "uf2"))
	ended := podObject("f", "n1", "", "uf2")
	ended["status"].(map[string]any)["phase"] = "Succeeded"
	c.setPod(ended)
	if _, ok := c.hints["x/f"]; ok {
		t.Fatal("x/f's hint outlived the pod's end")
	}

	// A hint for the next pod of a name is not the current one's, and
	// the current one's deletion does not take it.
	c.setPod(podObject("g", "n1", "", "old"))
	hint(added("g", "c-g2", "10.244.1.10", "new"))
	if got := addrOf(c, "g"); got != "" {
		t.Fatalf("x/g (uid old) compiled with %q from the hint of uid new", got)
	}
	c.deletePod("x", "g")
	c.setPod(podObject("g", "n1", "", "new"))
	if got := addrOf(c, "g"); got != "10.244.1.10" {
		t.Fatalf("x/g (uid new) compiled with %q, want its hint 10.244.1.10", got)
	}

	// Two hints for one address: the later ADD's, the node's IPAM having
	// freed it since (the earlier DEL's event was lost).
	c.setPod(podObject("h", "n1", "", "uh2"))
	hint(added("h", "c-h", "10.244.1.10", "uh2"))
	if got := addrOf(c, "g"); got != "" {
		t.Fatalf("x/g kept %q, given to x/h since", got)
	}
	if got := addrOf(c, "h"); got != "10.244.1.10" {
		t.Fatalf("x/h compiled with %q", got)
	}

	// Expiry: past hintTTL, a hint is gone.
	clock = clock.Add(hintTTL + time.Second)
	if got := addrOf(c, "h"); got != "" {
		t.Fatalf("x/h compiled with %q from an expired hint", got)
	}
	if len(c.hints) != 0 {
		t.Fatalf("expired hints kept: %v", c.hints)
	}
}

// The hints kept are bounded, whatever arrives.
func TestAddressHintsBounded(t *testing.T) {
	c := newCluster()
	wide := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	a := netip.MustParseAddr("10.0.0.1")
	refused := 0
	for i := 0; i < maxHints+10; i++ {
		p := cnievents.Pod{Namespace: "x", Name: "p" + a.String(), ContainerID: "c", IP: a.String()}
		if c.hint(p, "n1", wide) == hintTooMany {
			refused++
		}
		a = a.Next()
	}
	if len(c.hints) != maxHints || refused != 10 {
		t.Fatalf("%d hints kept, %d refused; want %d and 10", len(c.hints), refused, maxHints)
	}
}

// The controller counts what it refuses and is kicked by what it takes.
func TestCNIEventKicksAndCounts(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	ctl, err := New(Config{Client: client, NodeName: "n1", NodeCIDRs: hintCIDRs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctl.CNIEvent(cnievents.Event{Verb: "ADD", OK: true, Pod: &cnievents.Pod{Namespace: "x", Name: "a", ContainerID: "c", IP: "10.9.9.9"}})
	ctl.CNIEvent(cnievents.Event{Verb: "ADD", OK: true}) // an older plugin's: no pod
	select {
	case <-ctl.kick:
		t.Fatal("a refused hint kicked the controller")
	default:
	}
	ctl.CNIEvent(cnievents.Event{Verb: "ADD", OK: true, Pod: &cnievents.Pod{Namespace: "x", Name: "a", ContainerID: "c", IP: "10.244.1.4"}})
	select {
	case <-ctl.kick:
	default:
		t.Fatal("an accepted hint did not kick the controller")
	}
	ctl.CNIEvent(cnievents.Event{Verb: "DEL", OK: true, Pod: &cnievents.Pod{Namespace: "x", Name: "a", ContainerID: "c"}})
	select {
	case <-ctl.kick:
	default:
		t.Fatal("the DEL of a hinted container did not kick the controller")
	}
	for result, want := range map[string]float64{hintAccepted: 1, hintOutside: 1, hintMalformed: 0} {
		var m dto.Metric
		if err := ctl.metrics.hints.WithLabelValues(result).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("weft_policy_address_hints_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}
