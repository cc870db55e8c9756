package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netns"
)

// PrefixEnv names the environment variable whose value starts the name
// of every namespace the test bed makes.
const PrefixEnv = "WEFT_TEST_NS_PREFIX"

// NS is a named network namespace made for one test: an operator can
// step into it with `ip netns exec NAME` while the test runs.
type NS struct {
	ns.NetNS
	Name string // e.g. "tbbr-042137"
}

// NewNS makes a namespace named prefix, a dash and six random digits,
// with loopback up (prefix itself starts with $WEFT_TEST_NS_PREFIX, so
// that a run can tell its namespaces from another's). It is removed when the test ends; a namespace that
// cannot be removed fails the test, since it would be left on the host.
// NewNS skips the test when it does not run as root.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	for range 10 {
		name := fmt.Sprintf("%s%s-%06d", os.Getenv(PrefixEnv), prefix, rand.IntN(1e6))
		h, err := netns.Create(name)
		if errors.Is(err, os.ErrExist) {
			continue // another run holds this name: draw again
		}
		if err != nil {
			t.Fatalf("namespace %s: %v", name, err)
		}
		n := &NS{NetNS: h, Name: name}
		t.Cleanup(func() { n.remove(t) })
		return n
	}
	t.Fatalf("no free namespace name with prefix %s", prefix)
	return nil
}

// NamedNS makes a namespace with exactly this name, removed like
// NewNS's. For names that must be known in advance; a taken name fails
// the test.
func NamedNS(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	h, err := netns.Create(name)
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	n := &NS{NetNS: h, Name: name}
	t.Cleanup(func() { n.remove(t) })
	return n
}

func (n *NS) remove(t testing.TB) {
	n.Close()
	if err := netns.Delete(n.Name); err != nil {
		t.Errorf("remove namespace %s: %v", n.Name, err)
	}
}

// Path is the namespace's bind mount, for nsenter --net= and CNI_NETNS.
func (n *NS) Path() string { return netns.Path(n.Name) }

// Run runs fn inside the namespace and fails the test on error.
func (n *NS) Run(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Do(func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatalf("in namespace %s: %v", n.Name, err)
	}
}

// Veth makes a veth pair, aName in a and bName in b, both up. The pair
// goes away with either namespace.
func Veth(t testing.TB, a ns.NetNS, aName string, b ns.NetNS, bName string) {
	t.Helper()
	err := a.Do(func(ns.NetNS) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = aName
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: bName, PeerNamespace: netlink.NsFd(int(b.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", aName, bName, err)
		}
		return linkUp(aName)
	})
	if err == nil {
		err = b.Do(func(ns.NetNS) error { return linkUp(bName) })
	}
	if err != nil {
		t.Fatal(err)
	}
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}
