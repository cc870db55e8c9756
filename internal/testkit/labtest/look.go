package labtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// Kernel snapshots a lab node's network state.
func Kernel(t testing.TB, l *lab.Lab, node string) lab.KernelState {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	k, err := l.Kernel(n.Netns)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PodOn returns the first pod of a lab node.
func PodOn(t testing.TB, l *lab.Lab, node string) *lab.PodState {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Pods) == 0 {
		t.Fatalf("node %s has no pod", node)
	}
	return n.Pods[0]
}

// VTEPMAC is the MAC of a lab node's VXLAN device, from its kernel;
// empty if it has none.
func VTEPMAC(t testing.TB, l *lab.Lab, node string) string {
	t.Helper()
	for _, line := range Kernel(t, l, node).Lines {
		if strings.HasPrefix(line, "link name=weft.vxlan ") {
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "mac="); ok {
					return v
				}
			}
		}
	}
	return ""
}

// FullMatrix waits up to wait until every pod of the lab reaches every
// other, then checks the whole matrix again with three echoes a pair.
func FullMatrix(t testing.TB, l *lab.Lab, wait time.Duration) {
	t.Helper()
	m, err := l.WaitMatrix(context.Background(), wait)
	if err != nil {
		t.Fatalf("matrix: %v\n%s", err, printed(m))
	}
	m, err = l.CheckMatrix(context.Background(), 3)
	if err != nil || !m.Full() {
		t.Fatalf("matrix with 3 echoes a pair: %v\n%s", err, printed(m))
	}
}

func printed(m *lab.Matrix) string {
	var b strings.Builder
	if m != nil {
		m.Print(&b)
	}
	return b.String()
}
