package netpol_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
	for step := range 300 {
		switch rng.IntN(9) {
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
		case 6: // a policy goes, or comes back
			i := rng.IntN(s.Policies)
			if j := slices.IndexFunc(in.Policies, func(p netpol.Policy) bool { return p.Name == s.Policy(i, 80).Name }); j >= 0 {
				in.Policies = slices.Delete(in.Policies, j, j+1)
			} else {
				in.Policies = append(in.Policies, s.Policy(i, 80))
			}
		case 7: // a pod moves between this node and another
			i := rng.IntN(len(in.Pods))
			if in.Pods[i].Node == in.Node {
				in.Pods[i].Node = "other"
			} else {
				in.Pods[i].Node = in.Node
			}
		case 8: // a policy's rules lose their peers
			i := rng.IntN(len(in.Policies))
			p := in.Policies[i]
			p.Ingress = slices.Clone(p.Ingress)
			if len(p.Ingress) > 0 {
				p.Ingress[0].Peers = nil
			}
			in.Policies[i] = p
		}
		got, want := k.Compile(in), netpol.Compile(in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: reused compile differs from a fresh one: %s", step, stateDiff(got, want))
		}
	}
}

// stateDiff names the fields (and the first differing key of a map)
// where two States differ.
func stateDiff(got, want *netpol.State) (out string) {
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := 0; i < gv.NumField(); i++ {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			f := gv.Type().Field(i).Name
			if gv.Field(i).Kind() == reflect.Map {
				for _, k := range gv.Field(i).MapKeys() {
					a, b := gv.Field(i).MapIndex(k), wv.Field(i).MapIndex(k)
					if !b.IsValid() {
						out += fmt.Sprintf("%s[%v] extra in reused: %v\n", f, k, a)
						break
					}
					if !reflect.DeepEqual(a.Interface(), b.Interface()) {
						out += fmt.Sprintf("%s[%v]: reused %v, fresh %v\n", f, k, a, b)
						break
					}
				}
				for _, k := range wv.Field(i).MapKeys() {
					if !gv.Field(i).MapIndex(k).IsValid() {
						out += fmt.Sprintf("%s[%v] missing in reused\n", f, k)
						break
					}
				}
			}
			out += f + "\n"
		}
	}
	return out
}

// The order of the input's pods, namespaces and policies does not matter:
// the agent hands them over in whatever order its caches hold them.
func TestCompileIgnoresInputOrder(t *testing.T) {
	s := netpoltest.Scale{Pods: 400, Namespaces: 12, Policies: 60, Local: 80}
	in := s.Cluster()
	want := netpol.Compile(in)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		rng.Shuffle(len(in.Pods), func(i, j int) { in.Pods[i], in.Pods[j] = in.Pods[j], in.Pods[i] })
		rng.Shuffle(len(in.Namespaces), func(i, j int) { in.Namespaces[i], in.Namespaces[j] = in.Namespaces[j], in.Namespaces[i] })
		rng.Shuffle(len(in.Policies), func(i, j int) { in.Policies[i], in.Policies[j] = in.Policies[j], in.Policies[i] })
		if got := netpol.Compile(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("a shuffled input compiles differently: %s", stateDiff(got, want))
		}
	}
}
