package netpolnft

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
)

// BenchmarkThroughputRatio streams TCP from pod b to pod a for a second at
// a time, alternately with no policy table and with 1000 policies over
// 10,000 pods loaded (a and b among the isolated pods, allowed to each
// other), and reports the median ratio loaded/none.
//
//	go test -run x -bench ThroughputRatio -benchtime 1x ./internal/netpolnft/
func BenchmarkThroughputRatio(bm *testing.B) {
	b := newBed(bm)
	var l net.Listener
	b.pods["a"].NS.Run(bm, func() (err error) {
		l, err = net.Listen("tcp4", ":5001")
		return err
	})
	defer l.Close()
	go sink(l)

	s := netpoltest.Scale{Pods: 10000, Namespaces: 100, Policies: 1000, Local: 110}
	in := s.Cluster()
	// The bed's pods join namespace ns0 as app0, which policy 0 isolates
	// both ways; two more policies let b stream to a on 5001.
	in.NodeCIDRs = append(in.NodeCIDRs, netip.MustParsePrefix("10.244.1.0/24"))
	for name, ip := range map[string]netip.Addr{"a": ipA, "b": ipB} {
		in.Pods = append(in.Pods, netpol.Pod{Namespace: "ns0", Name: "bed-" + name, IP: ip, Node: "n1",
			Labels: map[string]string{"app": "app0", "bed": name}})
	}
	allow := netpol.Rule{Ports: []netpol.Port{{Protocol: netpol.TCP, Port: 5001}}}
	toA, fromB := allow, allow
	toA.Peers = []netpol.Peer{{PodSelector: sel("bed", "a")}}
	fromB.Peers = []netpol.Peer{{PodSelector: sel("bed", "b")}}
	in.Policies = append(in.Policies,
		netpol.Policy{Namespace: "ns0", Name: "bench-in", PodSelector: *sel("bed", "a"), IngressIsolates: true, Ingress: []netpol.Rule{fromB}},
		netpol.Policy{Namespace: "ns0", Name: "bench-out", PodSelector: *sel("bed", "b"), EgressIsolates: true, Egress: []netpol.Rule{toA}})
	st := netpol.Compile(in)
	if _, ok := st.Ingress[ipA]; !ok {
		bm.Fatal("pod a is not isolated")
	}
	if _, ok := st.Egress[ipB]; !ok {
		bm.Fatal("pod b is not isolated")
	}

	var none, loaded []float64
	for range 3 {
		b.n1.Do(bm, removeTable)
		none = append(none, stream(b.pods["b"].NS, bm, ipA, 5001, time.Second))
		b.n1.Do(bm, func() error { _, err := (&Applier{}).Apply(st); return err })
		loaded = append(loaded, stream(b.pods["b"].NS, bm, ipA, 5001, time.Second))
	}
	b.n1.Do(bm, removeTable)
	bm.ReportMetric(median(none)/1e6, "MB/s-no-policy")
	bm.ReportMetric(median(loaded)/1e6, "MB/s-1000-policies")
	bm.ReportMetric(median(loaded)/median(none), "ratio")
}

// stream sends from n to dst:port for d and returns bytes per second.
func stream(n interface {
	Run(testing.TB, func() error)
}, tb testing.TB, dst netip.Addr, port int, d time.Duration) float64 {
	var sent int64
	n.Run(tb, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(dst, uint16(port)).String(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			k, err := c.Write(buf)
			sent += int64(k)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return float64(sent) / d.Seconds()
}

func sink(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
