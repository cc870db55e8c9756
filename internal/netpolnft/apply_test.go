package netpolnft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netpol"
)

func sel(kv ...string) *netpol.Selector {
	s := &netpol.Selector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

var (
	denyX = netpol.Policy{Namespace: "x", Name: "deny", IngressIsolates: true}
	// a accepts pod b of its namespace on its port named web (80 on a).
	aFromB = netpol.Policy{Namespace: "x", Name: "a-from-b", PodSelector: *sel("pod", "a"), IngressIsolates: true,
		Ingress: []netpol.Rule{{Peers: []netpol.Peer{{PodSelector: sel("pod", "b")}},
			Ports: []netpol.Port{{Protocol: netpol.TCP, Name: "web"}}}}}
	// b accepts the underlay but not ext's own address, and remote pods.
	bFromBlock = netpol.Policy{Namespace: "x", Name: "b-from-block", PodSelector: *sel("pod", "b"), IngressIsolates: true,
		Ingress: []netpol.Rule{{Peers: []netpol.Peer{{IPBlock: &netpol.IPBlock{
			CIDR:   netip.MustParsePrefix("172.30.0.0/16"),
			Except: []netip.Prefix{netip.MustParsePrefix("172.30.1.2/32")}}},
			{IPBlock: &netpol.IPBlock{CIDR: netip.MustParsePrefix("10.244.2.0/24")}}}}}}
	cNoEgress = netpol.Policy{Namespace: "y", Name: "no-egress", PodSelector: *sel("pod", "c"), EgressIsolates: true}
	// c may reach namespace x on each destination's own port named web.
	cToWeb = netpol.Policy{Namespace: "y", Name: "to-web", PodSelector: *sel("pod", "c"), EgressIsolates: true,
		Egress: []netpol.Rule{{Peers: []netpol.Peer{{NamespaceSelector: sel("ns", "x")}},
			Ports: []netpol.Port{{Protocol: netpol.TCP, Name: "web"}}}}}
)

func TestPacketsFollowPolicies(t *testing.T) {
	b := newBed(t)
	a, pb, c := b.pods["a"].NS, b.pods["b"].NS, b.pods["c"].NS
	b.apply(nil)
	if !connects(t, pb, netip.Addr{}, ipA, 80) || !answersUDP(t, c, ipA, 81) || !connects(t, c, netip.Addr{}, ipExt, 80) {
		t.Fatal("with no policy every pod is open")
	}

	b.apply([]netpol.Policy{denyX})
	if connects(t, pb, netip.Addr{}, ipA, 80) || connects(t, c, netip.Addr{}, ipA, 80) || answersUDP(t, c, ipB, 80) {
		t.Error("default deny ingress in x: x's pods must be unreachable")
	}
	if connects(t, b.ext.NS, netip.Addr{}, ipA, 80) {
		t.Error("default deny ingress in x: routed traffic from outside must be dropped")
	}
	if !connects(t, a, netip.Addr{}, ipC, 80) || !answersUDP(t, a, ipC, 81) {
		t.Error("x's pods still reach y's, and the replies come back")
	}
	if !connects(t, b.n1.NS, netip.Addr{}, ipA, 80) {
		t.Error("the node must always reach its own pods (kubelet probes)")
	}
	if d := b.drops(); d.ByPolicy["x/deny"] == 0 || d.ByPolicy["y/no-egress"] != 0 {
		t.Errorf("drops are counted against the policy that isolates the pod: %+v", d)
	}

	b.apply([]netpol.Policy{denyX, aFromB, bFromBlock})
	if !connects(t, pb, netip.Addr{}, ipA, 80) {
		t.Error("b → a on a's port named web (80) must pass")
	}
	if connects(t, pb, netip.Addr{}, ipA, 81) || connects(t, c, netip.Addr{}, ipA, 80) || answersUDP(t, pb, ipA, 80) {
		t.Error("only b, only TCP, only a's web port")
	}
	if connects(t, b.ext.NS, ipExt, ipB, 80) {
		t.Error("ipBlock except: 172.30.1.2 is excepted")
	}
	if !connects(t, b.ext.NS, ipR, ipB, 81) {
		t.Error("ipBlock: remote pod 10.244.2.5 is in an allowed block")
	}

	b.apply([]netpol.Policy{cNoEgress})
	if connects(t, c, netip.Addr{}, ipExt, 80) || connects(t, c, netip.Addr{}, ipA, 80) {
		t.Error("egress deny: c must reach nothing")
	}
	if !connects(t, pb, netip.Addr{}, ipC, 80) {
		t.Error("egress-only policy leaves c's ingress open")
	}

	// Named egress ports resolve on each destination: web is 80 on a
	// and 81 on b.
	b.apply([]netpol.Policy{cToWeb})
	for _, p := range []struct {
		dst  netip.Addr
		port int
		want bool
	}{{ipA, 80, true}, {ipB, 81, true}, {ipA, 81, false}, {ipB, 80, false}} {
		if got := connects(t, c, netip.Addr{}, p.dst, p.port); got != p.want {
			t.Errorf("c → %s:%d: got %v, want %v", p.dst, p.port, got, p.want)
		}
	}
	b.checkClean(netpol.Compile(b.input([]netpol.Policy{cToWeb})))

	// Operators read the table with nft: every rule shape must print.
	b.apply([]netpol.Policy{denyX, aFromB, bFromBlock, cNoEgress, cToWeb})
	if out := b.nft("list", "table", "ip", Table); !strings.Contains(out, "chain judge") {
		t.Errorf("nft list table:\n%s", out)
	}
}

// A pod the agent has not computed verdicts for yet is unreachable while
// any policy exists; once known, and not isolated, it is open.
func TestUnknownPodIsUnreachableUntilKnown(t *testing.T) {
	b := newBed(t)
	c := b.pods["c"].NS
	b.apply([]netpol.Policy{denyX}, "a", "b", "r")
	if connects(t, b.pods["b"].NS, netip.Addr{}, ipC, 80) || connects(t, c, netip.Addr{}, ipExt, 80) {
		t.Error("an unknown local pod must be neither reachable nor able to send")
	}
	if !connects(t, b.n1.NS, netip.Addr{}, ipC, 80) {
		t.Error("the node reaches even an unknown pod")
	}
	if d := b.drops(); d.Unknown == 0 {
		t.Errorf("drops at an unknown pod are counted: %+v", d)
	}
	res := b.apply([]netpol.Policy{denyX})
	if res.Bumped {
		t.Error("a new pod revokes nothing: open connections need no second look")
	}
	if !connects(t, b.pods["b"].NS, netip.Addr{}, ipC, 80) || !connects(t, c, netip.Addr{}, ipExt, 80) {
		t.Error("once known, a pod no policy selects is open")
	}
}

func (b *bed) checkClean(want *netpol.State) {
	b.t.Helper()
	var drift []string
	b.n1.Do(b.t, func() (err error) {
		drift, err = Check(want)
		return err
	})
	if len(drift) > 0 {
		b.t.Errorf("Check reports drift:\n%s", strings.Join(drift, "\n"))
	}
}

func (b *bed) drops() Drops {
	b.t.Helper()
	var d Drops
	b.n1.Do(b.t, func() (err error) {
		d, err = ReadDrops()
		return err
	})
	return d
}
