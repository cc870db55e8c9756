package datapath_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/testkit/fakepeers"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// BenchmarkReconcile1000Peers programs 1000 VXLAN peers from cold
// (routes, neighbours, FDB entries: 3000 kernel objects), then reports a
// reconcile with nothing to change.
func BenchmarkReconcile1000Peers(b *testing.B) {
	topo := testnet.NewTopo(b, "wta", []string{"a"})
	n := topo.Nodes["a"]
	peers := fakepeers.Nodes(1000)
	var dp *datapath.Datapath
	n.Do(b, func() (err error) {
		dp, err = datapath.New(datapath.Config{Node: "a", Backend: cluster.BackendAuto, Subnet: netip.MustParsePrefix("10.7.0.0/24"), UnderlayIP: n.IP,
			ClusterCIDR: netip.MustParsePrefix("10.0.0.0/8")})
		return err
	})
	var cold, warm time.Duration
	for i := 0; i < b.N; i++ {
		n.Do(b, func() error {
			if _, err := datapath.Remove(); err != nil {
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
