package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkWtaAgent1000Peers puts 1000 VXLAN peer records in etcd (their
// underlay addresses, 198.18.0.0/15, are routed nowhere and never sent
// to; no packet goes to their subnets), starts a real agent and reports
// the time from its start until all 1000 routes are in its node's kernel,
// and the agent's memory then.
func BenchmarkWtaAgent1000Peers(b *testing.B) {
	const n = 1000
	var total time.Duration
	var rss, anon int
	for i := 0; i < b.N; i++ {
		e := newEnv(b, []string{"--cluster-cidr", "10.0.0.0/12"}, []string{"a"})
		if err := writeFakePeers(context.Background(), e.etcdClient(), n); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		p := e.start("a")
		eventually(b, "1000 peers programmed", 60*time.Second, func() error {
			if k := kernelState(b, e.topo.Nodes["a"]); len(k.routes) != n || len(k.fdb) != n || len(k.neighs) != n {
				return fmt.Errorf("%d routes, %d neighbours, %d FDB entries", len(k.routes), len(k.neighs), len(k.fdb))
			}
			return nil
		})
		total += time.Since(start)
		rss = max(rss, statusKB(p.cmd.Process.Pid, "VmRSS:"))
		anon = max(anon, statusKB(p.cmd.Process.Pid, "RssAnon:"))
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/start-to-1000-programmed")
	// RSS is mostly file-backed pages of the weft binary, which also holds
	// the lab, the Kubernetes client and the benchmarks; RssAnon is what
	// the agent allocated.
	b.ReportMetric(float64(rss)/1024, "MB-RSS")
	b.ReportMetric(float64(anon)/1024, "MB-RssAnon")
}

func writeFakePeers(ctx context.Context, cli *clientv3.Client, n int) error {
	var ops []clientv3.Op
	for i := 0; i < n; i++ {
		p := cluster.Node{
			Name:       fmt.Sprintf("peer%04d", i),
			UnderlayIP: netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}),
			Subnet:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 8 + byte(i>>8), byte(i), 0}), 24),
			VTEPMAC:    fmt.Sprintf("0e:76:c6:12:%02x:%02x", i>>8, i&0xff),
			Backend:    cluster.BackendVXLAN,
		}
		bts, err := json.Marshal(p)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut("/weft/nodes/"+p.Name, string(bts)))
		if len(ops) == 64 || i == n-1 {
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				return fmt.Errorf("write peer records: %w", err)
			}
			ops = ops[:0]
		}
	}
	return nil
}

func statusKB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == field {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
