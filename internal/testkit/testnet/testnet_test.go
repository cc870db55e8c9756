package testnet

import (
	"errors"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netns"
)

func TestEventuallyPollsUntilTheConditionHolds(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, "third call", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}

// A namespace and the veth pair in it are there during the test and gone
// after it, without the test removing anything itself.
func TestNamespacesAndVethsAreGoneWhenTheTestEnds(t *testing.T) {
	RequireRoot(t)
	var names []string
	t.Run("make", func(t *testing.T) {
		a, b := NewNS(t, "tn"), NewNS(t, "tn")
		if a.Name == b.Name {
			t.Fatalf("two namespaces named %s", a.Name)
		}
		Veth(t, a, "tna", b, "tnb")
		b.Run(t, func() error {
			l, err := netlink.LinkByName("tnb")
			if err == nil && l.Attrs().OperState != netlink.OperUp && l.Attrs().Flags&1 == 0 {
				err = errors.New("tnb is not up")
			}
			return err
		})
		if err := a.Do(func(ns.NetNS) error { _, err := netlink.LinkByName("tna"); return err }); err != nil {
			t.Fatal(err)
		}
		names = []string{a.Name, b.Name}
	})
	for _, n := range names {
		if netns.Exists(n) {
			t.Errorf("namespace %s left after its test", n)
		}
	}
}
