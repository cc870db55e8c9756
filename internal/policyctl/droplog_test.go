package policyctl

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/nflog"
)

// udpPacket is an IPv4 header and a UDP header from src:sport to dst:dport.
func udpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	b := make([]byte, 28)
	b[0], b[9] = 0x45, netpol.UDP
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	b[20], b[21], b[22], b[23] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	return b
}

// A logged drop names both ends by pod, the direction, the pod the chain
// judges (also when the packet is a reply) and the policies that isolate
// it.
func TestDropLinesNamePodsAndPolicies(t *testing.T) {
	a, b, ext := netip.MustParseAddr("10.244.1.11"), netip.MustParseAddr("10.244.2.12"), netip.MustParseAddr("192.0.2.7")
	var buf bytes.Buffer
	c := &Controller{cfg: Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, cl: newCluster()}
	c.cl.pods["x/a"] = netpol.Pod{Namespace: "x", Name: "a", IP: a}
	c.cl.pods["y/b"] = netpol.Pod{Namespace: "y", Name: "b", IP: b}
	c.last = &netpol.State{
		Chains:  map[string]*netpol.Chain{"in-1": {Dir: netpol.In, Policies: []string{"x/deny", "x/web"}}, "eg-2": {Dir: netpol.Out, Policies: []string{"x/no-out"}}},
		Ingress: map[netip.Addr]string{a: "in-1"},
		Egress:  map[netip.Addr]string{a: "eg-2"},
	}
	names := c.cl.podNames()
	for _, tc := range []struct {
		p    nflog.Packet
		want []string
	}{
		{nflog.Packet{Prefix: "in-1", Payload: udpPacket(b, a, 40000, 80)},
			[]string{`from="y/b 10.244.2.12:40000"`, `to="x/a 10.244.1.11:80"`, "proto=udp", "direction=ingress", `pod="x/a 10.244.1.11"`, "policies=x/deny,x/web"}},
		// A reply from a to b, dropped by a's ingress chain.
		{nflog.Packet{Prefix: "in-1", Payload: udpPacket(a, b, 80, 40000)},
			[]string{"direction=ingress", `pod="x/a 10.244.1.11"`}},
		{nflog.Packet{Prefix: "eg-2", Payload: udpPacket(a, ext, 5000, 53)},
			[]string{`to=192.0.2.7:53`, "direction=egress", `pod="x/a 10.244.1.11"`, "policies=x/no-out"}},
		{nflog.Packet{Prefix: netpolnft.LogPrefixUnknown, Payload: udpPacket(netip.MustParseAddr("10.244.1.99"), a, 1, 2)},
			[]string{"no verdicts yet", "from=10.244.1.99:1"}},
	} {
		buf.Reset()
		c.logDrop(tc.p, names)
		for _, w := range tc.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%s: log line %q lacks %q", tc.p.Prefix, buf.String(), w)
			}
		}
	}
}
