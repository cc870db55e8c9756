package netpol

import (
	"net/netip"
	"testing"
)

// While any policy exists, a local address the State has no verdicts for
// (a pod started after the last compile) is dropped both ways; with no
// policy at all, nothing is.
func TestUnknownLocalAddressesAreGuardedOnlyWhilePoliciesExist(t *testing.T) {
	newPod := netip.MustParseAddr("10.244.1.99")
	remote := netip.MustParseAddr("10.244.2.7")
	open := Compile(cluster())
	if open.Guarded || !allowed(open, newPod, podIP("xa"), TCP, 80) {
		t.Error("with no policy, an unknown pod is open")
	}
	st := Compile(cluster(policy("z", "unrelated", `{"podSelector":{"matchLabels":{"pod":"c"}}}`)))
	if !st.Guarded || len(st.Known) != len(order) {
		t.Fatalf("guarded %v, known %v", st.Guarded, st.Known)
	}
	if allowed(st, newPod, podIP("xa"), TCP, 80) || allowed(st, podIP("xa"), newPod, TCP, 80) {
		t.Error("an unknown local pod must be unreachable and mute while policies exist")
	}
	if !allowed(st, remote, podIP("xa"), TCP, 80) {
		t.Error("a remote address is its own node's business")
	}
}

// Remote pods are peers but get no chains here; host-network pods are
// neither; pods with the same verdicts share one chain.
func TestLocalityAndSharing(t *testing.T) {
	in := cluster(policy("x", "deny", `{"podSelector":{}}`),
		policy("x", "from-remote", `{"podSelector":{"matchLabels":{"pod":"a"}},
			"ingress":[{"from":[{"podSelector":{"matchLabels":{"role":"client"}}}]}]}`))
	in.Pods = append(in.Pods,
		Pod{Namespace: "x", Name: "r", Node: "n2", IP: netip.MustParseAddr("10.244.2.7"), Labels: map[string]string{"role": "client"}},
		Pod{Namespace: "x", Name: "h", Node: "n1", IP: netip.MustParseAddr("192.168.0.1"), HostNetwork: true, Labels: map[string]string{"role": "client"}})
	st := Compile(in)
	if _, ok := st.Ingress[netip.MustParseAddr("10.244.2.7")]; ok {
		t.Error("a remote pod got a chain on this node")
	}
	if !allowed(st, netip.MustParseAddr("10.244.2.7"), podIP("xa"), TCP, 80) {
		t.Error("remote client pod must reach x/a")
	}
	if allowed(st, netip.MustParseAddr("192.168.0.1"), podIP("xa"), TCP, 80) {
		t.Error("a host-network pod is not selected as a pod peer")
	}
	if st.Ingress[podIP("xb")] != st.Ingress[podIP("xc")] || st.Ingress[podIP("xa")] == st.Ingress[podIP("xb")] {
		t.Errorf("x/b and x/c should share a chain, x/a not: %v", st.Ingress)
	}
	if len(st.Chains) != 2 {
		t.Errorf("want 2 chains, got %d", len(st.Chains))
	}
}

func TestBlockRanges(t *testing.T) {
	got := blockRanges(IPBlock{CIDR: netip.MustParsePrefix("10.0.0.0/24"),
		Except: []netip.Prefix{netip.MustParsePrefix("10.0.0.16/28"), netip.MustParsePrefix("10.0.0.0/32"), netip.MustParsePrefix("10.9.0.0/16")}})
	want := []AddrRange{{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.15")},
		{netip.MustParseAddr("10.0.0.32"), netip.MustParseAddr("10.0.0.255")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v", got, want)
	}
	if all := blockRanges(IPBlock{CIDR: netip.MustParsePrefix("0.0.0.0/0")}); len(all) != 1 || all[0].Last != netip.MustParseAddr("255.255.255.255") {
		t.Errorf("0.0.0.0/0: %v", all)
	}
	if got := mergePorts([]PortRange{{90, 95}, {80, 85}, {86, 88}, {81, 82}}); len(got) != 2 || got[0] != (PortRange{80, 88}) {
		t.Errorf("merge: %v", got)
	}
}
