package netpol_test

import (
	"testing"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
)

// go test -run x -bench Compile ./internal/netpol/
func BenchmarkCompile1000Policies10000Pods(b *testing.B) {
	for _, local := range []int{110, 10000} {
		s := netpoltest.Scale{Pods: 10000, Namespaces: 100, Policies: 1000, Local: local}
		in := s.Cluster()
		b.Run(map[int]string{110: "110-local-pods", 10000: "all-local"}[local], func(b *testing.B) {
			var st *netpol.State
			for b.Loop() {
				st = netpol.Compile(in)
			}
			elems := 0
			for _, a := range st.AddrSets {
				elems += len(a)
			}
			for _, a := range st.TupleSets {
				elems += len(a)
			}
			b.ReportMetric(float64(len(st.Chains)), "chains")
			b.ReportMetric(float64(elems), "set-elements")
		})
	}
}
