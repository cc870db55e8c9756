// Package labtest is what Weft's end-to-end tests share: a lab config
// with a unique name and the real binaries; a lab that is removed when its
// test ends, checked to leave no namespace, directory or process behind
// and the host's own namespace as it found it; the usual looks into a running lab's nodes and pods; and a
// datastore outage that the datapath must ride out. Only tests import
// it: it starts nothing a test did not ask for.
package labtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// Config is the default lab config with a unique name (prefix and six
// random digits, so that two runs never collide) and the real binaries.
func Config(t testing.TB, prefix string) lab.Config {
	t.Helper()
	testnet.RequireRoot(t, "runs a lab of network namespaces")
	weft, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	cni, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.DefaultConfig()
	cfg.Name = fmt.Sprintf("%s%06d", prefix, rand.IntN(1e6))
	cfg.WeftBin, cfg.CNIBin = weft, cni
	return cfg
}

// Up builds a lab and removes it when the test ends (see RemoveAtEnd).
func Up(t testing.TB, cfg lab.Config) *lab.Lab {
	t.Helper()
	RemoveAtEnd(t, cfg.Name)
	l, err := lab.Up(context.Background(), cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}

// RemoveAtEnd takes the lab name down when the test ends, pass or fail,
// and fails the test if anything of the lab is left (AssertGone) or the
// host's namespace changed meanwhile (HostNetwork). A failed test also
// gets the end of every agent's log and of the datastore's.
func RemoveAtEnd(t testing.TB, name string) {
	t.Helper()
	before := HostNetwork(t)
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, name, 30)
		}
		if err := lab.Down(name); err != nil {
			t.Errorf("lab down: %v", err)
		}
		AssertGone(t, name)
		if after := HostNetwork(t); after != before {
			t.Errorf("the host's namespace changed:\nbefore\n%s\nafter\n%s", before, after)
		}
	})
}

// logTails logs the last n lines of the lab's agent and datastore logs.
func logTails(t testing.TB, name string, n int) {
	l, err := lab.Open(name, nil)
	if err != nil {
		return
	}
	for _, node := range l.Nodes {
		if b, err := os.ReadFile(node.AgentLog); err == nil {
			t.Logf("agent log of %s:\n%s", node.Name, Tail(string(b), n))
		}
	}
	if b, err := os.ReadFile(l.State.Datastore.Log); err == nil {
		t.Logf("datastore (%s) log:\n%s", l.State.Datastore.Kind, Tail(string(b), n))
	}
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
