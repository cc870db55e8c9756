// Package testnet is the test bed every Weft test shares: the root check,
// named network namespaces that are removed (or the test fails) when the
// test ends, veth pairs between them, a topology of node namespaces on
// routed underlay segments, kernel snapshots, and polling a condition with
// a deadline. Only tests import it.
//
// Everything it makes lives in namespaces it created; nothing touches the
// host's own namespace.
//
// Two pieces the product shares live in packages of their own, since
// the product must not link package testing: the snapshot itself
// (kernelstate, which the lab's looks into its nodes use) and fake peer
// records for scale measurements (fakepeers, which `weft bench scale`
// uses).
package testnet

import (
	"os"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root, naming why it needs
// root; by default "creates network namespaces". Call it first, before
// the test builds anything. With -short (`make unit`, the loop run
// after every edit) it skips the test as root too: what needs root
// needs namespaces, labs or a control plane, and is left to `make test`.
func RequireRoot(t testing.TB, why ...string) {
	t.Helper()
	reason := "creates network namespaces"
	if len(why) > 0 {
		reason = why[0]
	}
	if testing.Short() {
		t.Skip("needs root (" + reason + "): not run by -short")
	}
	if os.Geteuid() == 0 {
		return
	}
	t.Skip("needs root: " + reason)
}

// Eventually polls cond until it returns nil, and fails the test with
// what and cond's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
