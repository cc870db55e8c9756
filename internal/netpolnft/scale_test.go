package netpolnft

import (
	"fmt"
	"testing"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// Every kind of change of a mixed cluster applies incrementally and
// leaves exactly the compiled State in the kernel.
func TestIncrementalChangesMatchACleanApply(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) { incremental(t, restart) })
	}
}

// incremental runs the changes with one Applier, or (restart) a new one
// for every change, which must read the kernel's table back first.
func incremental(t *testing.T, restart bool) {
	s := netpoltest.Scale{Pods: 300, Namespaces: 10, Policies: 40, Local: 60}
	n := testnet.NewNS(t, "npinc")
	in := s.Cluster()
	a := &Applier{}
	step := func(what string) {
		t.Helper()
		st := netpol.Compile(in)
		if restart {
			a = &Applier{}
		}
		n.Run(t, func() error {
			if _, err := a.Apply(st); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			drift, err := Check(st)
			if err != nil {
				return err
			}
			if len(drift) > 0 {
				return fmt.Errorf("%s: drift %v", what, drift)
			}
			return nil
		})
	}
	step("first apply")
	for i := range 3 {
		in.Policies[0] = s.Policy(0, uint16(81-i%2))
		step(fmt.Sprintf("policy change %d", i))
		in.Pods[0] = s.Pod(0, fmt.Sprintf("app%d", 9-i))
		step(fmt.Sprintf("pod change %d", i))
	}
	in.Pods = in.Pods[:len(in.Pods)-20]
	in.Policies = in.Policies[:10]
	step("pods and policies deleted")
	in.Policies = nil
	step("no policy left")
	n.Run(t, removeTable)
}
