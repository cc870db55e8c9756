package netpolnft

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// cpuTime is the process's user plus system time: the kernel applies a
// netlink batch in the sender's system call, so this counts the
// kernel's work too, and unlike wall time it does not grow when other
// processes share the CPUs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScale compiles and applies 1000 policies over 10,000 pods, in
// a namespace of its own, then measures one policy change and one pod
// change (each: compile everything again, apply the difference).
//
//	go test -run x -bench Scale -benchtime 10x ./internal/netpolnft/
func BenchmarkScale(b *testing.B) {
	for _, local := range []int{110, 10000} {
		s := netpoltest.Scale{Pods: 10000, Namespaces: 100, Policies: 1000, Local: local}
		b.Run(fmt.Sprintf("local=%d", local), func(b *testing.B) {
			n := testnet.NewNS(b, "npbench")
			in := s.Cluster()
			report := func(b *testing.B, start time.Time, cpu0 time.Duration) {
				b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "wall-ms/op")
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			}
			b.Run("full", func(b *testing.B) {
				n.Run(b, func() error {
					start, cpu0 := time.Now(), cpuTime()
					for b.Loop() {
						if _, err := Remove(); err != nil {
							return err
						}
						if _, err := (&Applier{}).Apply(netpol.Compile(in)); err != nil {
							return err
						}
					}
					report(b, start, cpu0)
					return nil
				})
			})
			// Each sub-benchmark enters the namespace itself: b.Run runs
			// its function on another goroutine, which is in the host's
			// namespace.
			// As the agent does: one Applier, one Compiler (which reuses
			// the sets whose pods and namespaces did not change).
			a := &Applier{}
			var k netpol.Compiler
			n.Run(b, func() error {
				_, err := a.Apply(k.Compile(in))
				return err
			})
			change := func(name string, edit func(i int)) {
				b.Run(name, func(b *testing.B) {
					n.Run(b, func() error {
						start, cpu0 := time.Now(), cpuTime()
						i := 0
						for b.Loop() {
							i++
							edit(i)
							if _, err := a.Apply(k.Compile(in)); err != nil {
								return err
							}
						}
						report(b, start, cpu0)
						return nil
					})
				})
			}
			change("policy-change", func(i int) { in.Policies[0] = s.Policy(0, uint16(80+i%2)) })
			change("pod-change", func(i int) { in.Pods[0] = s.Pod(0, fmt.Sprintf("app%d", i%2*9)) })
			b.Run("compile-only", func(b *testing.B) {
				start, cpu0 := time.Now(), cpuTime()
				for b.Loop() {
					netpol.Compile(in)
				}
				report(b, start, cpu0)
			})
			n.Run(b, removeTable)
		})
	}
}
