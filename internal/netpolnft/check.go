package netpolnft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netpol"
)

// Check compares the table with want, read-only, and returns one line per
// difference (none when the kernel enforces exactly want). Doctor calls it
// with the State the agent computed.
func Check(want *netpol.State) ([]string, error) {
	c, err := conn()
	if err != nil {
		return nil, err
	}
	k, ok, err := read(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []string{fmt.Sprintf("nftables table ip %s is missing or not Weft's policy layout", Table)}, nil
	}
	var out []string
	h := k.st
	if !slices.Equal(prefixRanges(h.NodeCIDRs), prefixRanges(want.NodeCIDRs)) {
		out = append(out, fmt.Sprintf("node pod subnets: kernel %v, want %v", h.NodeCIDRs, want.NodeCIDRs))
	}
	if h.Guarded != want.Guarded {
		out = append(out, fmt.Sprintf("unknown local addresses dropped: kernel %v, want %v", h.Guarded, want.Guarded))
	}
	if add, del := addrDiff(h.Known, want.Known); len(add)+len(del) > 0 {
		out = append(out, fmt.Sprintf("known pods: missing %v, extra %v", add, del))
	}
	out = append(out, setDrift("address set", h.AddrSets, want.AddrSets, func(a, b []netip.Addr) bool {
		x, y := addrDiff(a, b)
		return len(x)+len(y) == 0
	})...)
	out = append(out, setDrift("tuple set", h.TupleSets, want.TupleSets, func(a, b []netpol.Tuple) bool {
		x, y := tupleDiff(a, b)
		return len(x)+len(y) == 0
	})...)
	out = append(out, setDrift("ipBlock set", h.CIDRSets, want.CIDRSets, slices.Equal[[]netpol.AddrRange])...)
	out = append(out, setDrift("port set", h.PortSets, want.PortSets, slices.Equal[[]netpol.PortRange])...)
	out = append(out, setDrift("chain", h.Chains, want.Chains, func(a, b *netpol.Chain) bool {
		return slices.Equal(chainTags(a), chainTags(b))
	})...)
	for name := range k.dirty {
		out = append(out, fmt.Sprintf("chain %s: rules not Weft's", name))
	}
	for _, m := range []struct {
		what      string
		have, wnt map[netip.Addr]string
	}{{"ingress", h.Ingress, want.Ingress}, {"egress", h.Egress, want.Egress}} {
		for _, a := range sortedAddrs(m.wnt) {
			if m.have[a] != m.wnt[a] {
				out = append(out, fmt.Sprintf("%s of %s: kernel %q, want %q", m.what, a, m.have[a], m.wnt[a]))
			}
		}
		for _, a := range sortedAddrs(m.have) {
			if _, ok := m.wnt[a]; !ok {
				out = append(out, fmt.Sprintf("%s of %s: kernel %q, want none", m.what, a, m.have[a]))
			}
		}
	}
	for _, s := range k.straySets {
		out = append(out, "stray set "+s)
	}
	for _, s := range k.strayChains {
		out = append(out, "stray chain "+s)
	}
	sort.Strings(out)
	return out, nil
}

// CheckLayout is the part of Check that needs no desired State (doctor
// without the agent): is there a table, and are its fixed chains and
// sets exactly Weft's? present is false when there is no table at all
// (no policy enforced on this node yet, or Kubernetes mode is off).
func CheckLayout() (present bool, problems []string, err error) {
	c, err := conn()
	if err != nil {
		return false, nil, err
	}
	t, err := findTable(c)
	if err != nil || t == nil {
		return false, nil, err
	}
	_, ok, err := read(c)
	if err != nil {
		return true, nil, err
	}
	if !ok {
		problems = append(problems, fmt.Sprintf("nftables table ip %s is not Weft's policy layout (the agent rebuilds it on its next apply)", Table))
	}
	return true, problems, nil
}

func setDrift[V any](what string, have, want map[string]V, same func(a, b V) bool) []string {
	var out []string
	for _, name := range sortedNames(want) {
		h, ok := have[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s: missing", what, name))
		case !same(h, want[name]):
			out = append(out, fmt.Sprintf("%s %s: elements differ", what, name))
		}
	}
	for _, name := range missing(have, want) {
		out = append(out, fmt.Sprintf("%s %s: not wanted", what, name))
	}
	return out
}

// Remove deletes the table (uninstall) and says what it removed; no table
// is not an error.
func Remove() ([]string, error) {
	c, err := conn()
	if err != nil {
		return nil, err
	}
	if t, err := findTable(c); err != nil || t == nil {
		return nil, err
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil // removed by someone else meanwhile
		}
		return nil, fmt.Errorf("delete nftables table ip %s: %w", Table, err)
	}
	return []string{"nftables table ip " + Table}, nil
}
