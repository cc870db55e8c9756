package testnet

import (
	"testing"

	"github.com/weftnet/weft/internal/testkit/kernelstate"
)

// Kernel snapshots the namespace at nsPath (see package kernelstate for
// what a snapshot holds, and what the kernel makes by itself that it
// leaves out), failing the test if it cannot be read.
func Kernel(t testing.TB, nsPath string) kernelstate.State {
	t.Helper()
	s, err := kernelstate.Take(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Path is the node's namespace, for nsenter --net= and snapshots.
func (n *Node) Path() string { return n.NS.Path() }
