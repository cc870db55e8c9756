package netpolnft

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/weftnet/weft/internal/netpol"
)

// diff adds to the batch everything that makes have into want, except
// deletions of whole sets and chains (deletions, after the references to
// them are gone). It reports whether the change can revoke something that
// was allowed: then open connections must be judged again. The steps run
// in this order because each one's rules and elements name what the
// earlier ones made: sets before the chains whose rules match them,
// chains before the verdict maps that jump to them.
func (b *batch) diff(have *kstate, want *netpol.State) (bump bool) {
	h := have.st
	bump = b.fixedSets(h, want)
	if b.namedSets(h, want) {
		bump = true
	}
	b.contentSets(h, want)
	if b.chains(have, want) {
		bump = true
	}
	if b.verdictMaps(h, want) {
		bump = true
	}
	return bump
}

// fixedSets updates the sets of the fixed layout: the node CIDRs and the
// guarded ranges (tiny interval sets, replaced whole when they differ)
// and the known pods (element by element).
func (b *batch) fixedSets(h, want *netpol.State) (bump bool) {
	sameCIDRs := slices.Equal(prefixRanges(h.NodeCIDRs), prefixRanges(want.NodeCIDRs))
	if !sameCIDRs {
		b.c.FlushSet(b.set(setNodeCIDRs))
		b.ops++
		b.addElems(b.set(setNodeCIDRs), rangeElems(prefixRanges(want.NodeCIDRs)))
		bump = true
	}
	if h.Guarded != want.Guarded || (want.Guarded && !sameCIDRs) {
		b.c.FlushSet(b.set(setGuarded))
		b.ops++
		if want.Guarded {
			b.addElems(b.set(setGuarded), rangeElems(prefixRanges(want.NodeCIDRs)))
			bump = true
		}
	}
	add, del := addrDiff(h.Known, want.Known)
	b.addElems(b.set(setKnown), addrElems(add))
	b.delElems(b.set(setKnown), addrElems(del))
	return bump || len(del) > 0
}

// namedSets makes or updates the peer sets, which are named by their
// definition and change element by element; a removed element may revoke.
func (b *batch) namedSets(h, want *netpol.State) (bump bool) {
	for _, name := range sortedNames(want.AddrSets) {
		elems := want.AddrSets[name]
		old, ok := h.AddrSets[name]
		if !ok {
			b.newSet(&nftables.Set{Name: name, KeyType: nftables.TypeIPAddr}, addrElems(elems))
			continue
		}
		add, del := addrDiff(old, elems)
		b.addElems(b.set(name), addrElems(add))
		b.delElems(b.set(name), addrElems(del))
		bump = bump || len(del) > 0
	}
	for _, name := range sortedNames(want.TupleSets) {
		elems := want.TupleSets[name]
		old, ok := h.TupleSets[name]
		if !ok {
			b.newSet(&nftables.Set{Name: name, KeyType: tupleType, Concatenation: true}, tupleElems(elems))
			continue
		}
		add, del := tupleDiff(old, elems)
		b.addElems(b.set(name), tupleElems(add))
		b.delElems(b.set(name), tupleElems(del))
		bump = bump || len(del) > 0
	}
	return bump
}

// contentSets makes the CIDR and port sets want has and have lacks. They
// are named by their content, so they never change: they are made, or
// deleted (deletions).
func (b *batch) contentSets(h, want *netpol.State) {
	for _, name := range sortedNames(want.CIDRSets) {
		if _, ok := h.CIDRSets[name]; !ok {
			b.newSet(&nftables.Set{Name: name, KeyType: nftables.TypeIPAddr, Interval: true}, rangeElems(want.CIDRSets[name]))
		}
	}
	for _, name := range sortedNames(want.PortSets) {
		if _, ok := h.PortSets[name]; !ok {
			b.newSet(&nftables.Set{Name: name, KeyType: nftables.TypeInetService, Interval: true}, portElems(want.PortSets[name]))
		}
	}
}

// chains makes the verdict chains want has and have lacks, and rewrites
// those the kernel holds otherwise (which may revoke).
func (b *batch) chains(have *kstate, want *netpol.State) (bump bool) {
	for _, name := range sortedNames(want.Chains) {
		wc := want.Chains[name]
		hc, ok := have.st.Chains[name]
		// A chain's name is a hash of its content, and a compiler hands
		// an unchanged chain over as the same Chain: comparing rules is
		// only needed for chains read back from the kernel.
		if ok && !have.dirty[name] && have.logOf(name) == b.log.spec() && (hc == wc || slices.Equal(chainTags(hc), chainTags(wc))) {
			continue
		}
		b.writeChain(name, wc, ok)
		bump = bump || ok
	}
	return bump
}

// writeChain writes chain name's rules (emptying it first when it
// exists): its verdicts, the drop log when logging is on, and the drop
// that ends it, tagged with the policies that made it.
func (b *batch) writeChain(name string, wc *netpol.Chain, exists bool) {
	ch := &nftables.Chain{Name: name, Table: b.t}
	if exists {
		b.c.FlushChain(ch)
	} else {
		b.c.AddChain(ch)
	}
	b.ops++
	for _, r := range wc.Rules {
		for _, x := range vruleRules(wc.Dir, r) {
			b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: x.exprs, UserData: []byte(x.tag)})
			b.ops++
		}
	}
	if b.log.Rate > 0 {
		r := logRule(b.log, name)
		b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: r.exprs, UserData: []byte(r.tag)})
		b.ops++
	}
	b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: dropExprs(),
		UserData: []byte(tagDrop + strings.Join(wc.Policies, ","))})
	b.ops++
}

// verdictMaps updates the ingress and egress verdict maps: a pod that
// gets a chain, or another one, may lose something it had, unless it is
// new (it had nothing yet).
func (b *batch) verdictMaps(h, want *netpol.State) (bump bool) {
	wasKnown := lazySet(h.Known)
	for _, m := range []struct {
		name      string
		have, wnt map[netip.Addr]string
	}{{mapIngress, h.Ingress, want.Ingress}, {mapEgress, h.Egress, want.Egress}} {
		added, changed, gone := mapChanges(m.have, m.wnt)
		if len(changed) > 0 {
			bump = true
		}
		for _, a := range added {
			if !want.Guarded || wasKnown(a) {
				bump = true
			}
		}
		var adds, dels []nftables.SetElement
		for _, a := range slices.Concat(changed, gone) {
			dels = append(dels, nftables.SetElement{Key: addrKey(a)})
		}
		for _, a := range slices.Concat(added, changed) {
			adds = append(adds, nftables.SetElement{Key: addrKey(a), Comment: m.wnt[a],
				VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: m.wnt[a]}})
		}
		b.delElems(b.set(m.name), dels)
		b.addElems(b.set(m.name), adds)
	}
	return bump
}

// mapChanges compares a verdict map's pods: those want adds, those whose
// chain changes, those that go, each sorted. The maps hold every isolated
// local pod: they are walked unsorted and only what changes is sorted
// (the batch stays deterministic).
func mapChanges(have, want map[netip.Addr]string) (added, changed, gone []netip.Addr) {
	for a, chain := range want {
		old, ok := have[a]
		switch {
		case !ok:
			added = append(added, a)
		case old != chain:
			changed = append(changed, a)
		}
	}
	for a := range have {
		if _, ok := want[a]; !ok {
			gone = append(gone, a)
		}
	}
	for _, l := range [][]netip.Addr{added, changed, gone} {
		slices.SortFunc(l, func(x, y netip.Addr) int { return x.Compare(y) })
	}
	return added, changed, gone
}

// lazySet is membership in addrs, its map made on the first question
// (most applies ask none).
func lazySet(addrs []netip.Addr) func(netip.Addr) bool {
	var in map[netip.Addr]bool
	return func(a netip.Addr) bool {
		if in == nil {
			in = make(map[netip.Addr]bool, len(addrs))
			for _, k := range addrs {
				in[k] = true
			}
		}
		return in[a]
	}
}
