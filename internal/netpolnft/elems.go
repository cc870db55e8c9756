package netpolnft

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/google/nftables"

	"github.com/weftnet/weft/internal/netpol"
)

// Differences between sorted element lists, and their nftables encoding.

func missing[V any](have, want map[string]V) []string {
	var out []string
	for _, name := range sortedNames(have) {
		if _, ok := want[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedAddrs(m map[netip.Addr]string) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func addrDiff(have, want []netip.Addr) (add, del []netip.Addr) {
	if slices.Equal(have, want) {
		return nil, nil // the common case, without building maps
	}
	h := make(map[netip.Addr]bool, len(have))
	for _, a := range have {
		h[a] = true
	}
	w := make(map[netip.Addr]bool, len(want))
	for _, a := range want {
		w[a] = true
		if !h[a] {
			add = append(add, a)
		}
	}
	for _, a := range have {
		if !w[a] {
			del = append(del, a)
		}
	}
	return add, del
}

func tupleDiff(have, want []netpol.Tuple) (add, del []netpol.Tuple) {
	if slices.Equal(have, want) {
		return nil, nil
	}
	h := make(map[netpol.Tuple]bool, len(have))
	for _, t := range have {
		h[t] = true
	}
	w := make(map[netpol.Tuple]bool, len(want))
	for _, t := range want {
		w[t] = true
		if !h[t] {
			add = append(add, t)
		}
	}
	for _, t := range have {
		if !w[t] {
			del = append(del, t)
		}
	}
	return add, del
}

func addrElems(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		out = append(out, nftables.SetElement{Key: addrKey(a)})
	}
	return out
}

func tupleElems(ts []netpol.Tuple) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ts))
	for _, t := range ts {
		out = append(out, nftables.SetElement{Key: tupleKey(t)})
	}
	return out
}
