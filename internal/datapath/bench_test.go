package datapath_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/datapath/dptest"
)

// fakePeers are VXLAN peers whose underlay addresses (198.18.0.0/15, a
// benchmarking range) are routed nowhere: nothing is ever sent to them.
func fakePeers(n int) []cluster.Node {
	out := make([]cluster.Node, n)
	for i := range out {
		out[i] = cluster.Node{
			Name:       fmt.Sprintf("peer%04d", i),
			UnderlayIP: netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}),
			Subnet:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 8 + byte(i>>8), byte(i), 0}), 24),
			VTEPMAC:    fmt.Sprintf("0e:76:c6:12:%02x:%02x", i>>8, i&0xff),
			Backend:    cluster.BackendVXLAN,
		}
	}
	return out
}

// BenchmarkWtaReconcile1000Peers programs 1000 VXLAN peers from cold
// (routes, neighbours, FDB entries: 3000 kernel objects), then reports a
// reconcile with nothing to change.
func BenchmarkWtaReconcile1000Peers(b *testing.B) {
	topo := dptest.New(b, "wta", []string{"a"})
	n := topo.Nodes["a"]
	peers := fakePeers(1000)
	var dp *datapath.Datapath
	n.Do(b, func() (err error) {
		dp, err = datapath.New(datapath.Config{Node: "a", Backend: cluster.BackendAuto, Subnet: netip.MustParsePrefix("10.7.0.0/24"), UnderlayIP: n.IP})
		return err
	})
	var cold, warm time.Duration
	for i := 0; i < b.N; i++ {
		n.Do(b, func() error {
			if err := datapath.Cleanup(); err != nil {
				return err
			}
			start := time.Now()
			res, err := dp.Reconcile(peers)
			cold += time.Since(start)
			if err != nil || res.Routes != 1000 || res.FDB != 1000 {
				return fmt.Errorf("reconcile: %v %+v", err, res.Routes)
			}
			start = time.Now()
			if res, err = dp.Reconcile(peers); err != nil || res.Added+res.Removed != 0 {
				return fmt.Errorf("steady reconcile: %v %+v", err, res)
			}
			warm += time.Since(start)
			return nil
		})
	}
	b.ReportMetric(float64(cold.Milliseconds())/float64(b.N), "ms/cold-1000")
	b.ReportMetric(float64(warm.Milliseconds())/float64(b.N), "ms/steady-1000")
}
