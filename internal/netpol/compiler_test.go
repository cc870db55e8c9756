package netpol_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
)

// A Compiler that reuses its previous sets gives exactly what a fresh
// compile gives, through a long random series of every kind of change.
func TestCompilerReuseEqualsFreshCompile(t *testing.T) {
	s := netpoltest.Scale{Pods: 400, Namespaces: 12, Policies: 60, Local: 80}
	in := s.Cluster()
	rng := rand.New(rand.NewPCG(1, 2))
	var k netpol.Compiler
	for step := range 120 {
		switch rng.IntN(6) {
		case 0: // a pod's labels
			i := rng.IntN(len(in.Pods))
			in.Pods[i] = s.Pod(i, fmt.Sprintf("app%d", rng.IntN(10)))
			in.Pods[i].Labels["role"] = []string{"client", "server"}[rng.IntN(2)]
		case 1: // a pod goes, another comes
			i := rng.IntN(len(in.Pods))
			in.Pods = append(in.Pods[:i], in.Pods[i+1:]...)
			in.Pods = append(in.Pods, s.Pod(rng.IntN(s.Pods), "app1"))
		case 2: // a namespace's labels
			i := rng.IntN(len(in.Namespaces))
			in.Namespaces[i].Labels = map[string]string{"team": fmt.Sprintf("t%d", rng.IntN(5))}
		case 3: // a policy's port
			i := rng.IntN(len(in.Policies))
			in.Policies[i] = s.Policy(i, uint16(80+rng.IntN(3)))
		case 4: // a named port's number
			i := rng.IntN(len(in.Pods))
			in.Pods[i].Ports = []netpol.NamedPort{{Name: "http", Protocol: netpol.TCP, Port: uint16(8000 + rng.IntN(3))}}
		case 5: // nothing
		}
		got, want := k.Compile(in), netpol.Compile(in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: reused compile differs from a fresh one", step)
		}
	}
}
