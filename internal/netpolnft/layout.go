// Package netpolnft enforces a netpol.State in nftables: it owns the table
// ip weft-policy (Table) and nothing else. Apply computes the difference
// between what the kernel holds and the desired State and sends it as one
// netlink batch, which the kernel applies atomically; Check reports drift.
//
// The layout (see layout.go) judges each connection on the forward path,
// by its conntrack tuple rather than by the packet, so that a reply is
// judged as the connection it belongs to and traffic DNATed to a pod is
// judged with the pod as destination (the reply tuple's source). Packets
// of a connection already judged under the current policy generation pass
// at the cost of one comparison; a change that can revoke something bumps
// the generation in the same batch, and every open connection is judged
// again on its next packet, in both directions. That is how a policy
// change cuts open connections within one packet (no conntrack walk, no
// race with packets in flight), and why established traffic costs the
// same whatever the number of policies and pods.
//
// The host's own traffic to its pods (kubelet probes) goes through the
// output hook, never forward: the node always reaches its pods.
package netpolnft

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netpol"
)

// Table is the nftables table (family ip: Weft's pod network is IPv4, and
// in an ip table conntrack addresses load as the 4-byte addresses nft
// prints) that this package owns. It is not
// the firewall package's table: that one is replaced whole on change,
// which the policy sets (thousands of elements, changed incrementally)
// must not be.
const Table = "weft-policy"

// Fixed chains and sets of the layout.
const (
	chainForward = "forward" // base chain, hook forward
	chainJudge   = "judge"   // connections from or to a local pod
	chainFresh   = "fresh"   // accept what the current generation judged
	chainStamp   = "stamp"   // mark a connection judged, accept
	chainUnknown = "unknown" // drop (and log) a packet of a pod without verdicts

	setNodeCIDRs = "node-cidrs"
	setGuarded   = "guarded" // node-cidrs while any policy exists, else empty
	setKnown     = "known"
	mapIngress   = "ingress"
	mapEgress    = "egress"
)

// genMask is the part of the conntrack mark that holds the generation a
// connection was judged under (24 bits; the low byte is left to others).
// Generation 0 means "never judged".
const (
	genMask  uint32 = 0xffffff00
	genShift        = 8
	genMax   uint32 = genMask >> genShift
)

func table() *nftables.Table {
	return &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
}

// A connection is judged by its ends, whichever direction the packet at
// hand travels: its source is the initiator, its destination and port the
// server's. A packet of the original direction carries them as source,
// destination and destination port; a reply swapped. Every match on them
// is therefore a pair of rules, one per direction (the second tagged with
// replySuffix). At the forward hook a packet DNATed to a pod (a Service)
// already carries the pod as destination, and a reply is not yet
// translated back: the packet fields are the connection's true ends.
//
// (Conntrack's tuple fields would say the same in one rule, but the
// nftables library cannot encode the ct expressions that the nft tool can
// print back, and an operator must be able to read this table with nft.)
func src(reply bool) expr.Any {
	if reply {
		return payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1)
	}
	return payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1)
}

func dst(reply bool) expr.Any { return src(!reply) }

func dport(reply bool, reg uint32) expr.Any {
	if reply {
		return payload(expr.PayloadBaseTransportHeader, 0, 2, reg)
	}
	return payload(expr.PayloadBaseTransportHeader, 2, 2, reg)
}

func l4proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

// replySuffix tags the reply-direction rule of a pair.
const replySuffix = "#reply"

// both makes the pair of rules for a match on the connection's ends.
func both(tag string, build func(reply bool) []expr.Any) []taggedRule {
	dir := func(reply bool) []expr.Any {
		d := byte(0)
		if reply {
			d = 1
		}
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{d}},
		}
	}
	return []taggedRule{
		{tag, append(dir(false), build(false)...)},
		{tag + replySuffix, append(dir(true), build(true)...)},
	}
}

// Registers: a single match uses reg1. Its first four bytes are also the
// 4-byte register reg32: a concatenated key starts in reg1 and goes on in
// reg32+1, reg32+2, the way nft itself lays it out (and can print it).
const (
	reg1  = 1
	reg32 = 8
)

func lookup(set string, reg uint32) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: set}
}
func notIn(set string, reg uint32) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: set, Invert: true}
}
func vmap(set string, reg uint32) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: set, DestRegister: 0, IsDestRegSet: true}
}
func verdict(k expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: k, Chain: chain}
}

func baseChain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
}

// fixedSets are the sets every layout has.
func fixedSets(t *nftables.Table) []*nftables.Set {
	return []*nftables.Set{
		{Table: t, Name: setNodeCIDRs, KeyType: nftables.TypeIPAddr, Interval: true},
		{Table: t, Name: setGuarded, KeyType: nftables.TypeIPAddr, Interval: true},
		{Table: t, Name: setKnown, KeyType: nftables.TypeIPAddr},
		{Table: t, Name: mapIngress, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict},
		{Table: t, Name: mapEgress, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict},
	}
}

type taggedRule struct {
	tag   string
	exprs []expr.Any
}

// fixedRules returns the rules of the fixed chains, each tagged so that
// Check and a restarted agent recognise them.
func fixedRules() map[string][]taggedRule {
	invalid := []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID | expr.CtStateBitUNTRACKED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}
	counter := func() expr.Any { return &expr.Counter{} }
	cat := func(parts ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return map[string][]taggedRule{
		chainForward: {
			// Packets conntrack could not place (invalid), or that a raw
			// rule exempted from it (untracked), belong to no connection
			// that could be judged: to or from a local pod, while
			// policies exist, they are dropped rather than let by.
			{"untracked-to", cat(invalid, []expr.Any{payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1), lookup(setGuarded, reg1), counter(), verdict(expr.VerdictDrop, "")})},
			{"untracked-from", cat(invalid, []expr.Any{payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1), lookup(setGuarded, reg1), counter(), verdict(expr.VerdictDrop, "")})},
			{"judge-from-local", []expr.Any{payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1), lookup(setNodeCIDRs, reg1), verdict(expr.VerdictGoto, chainJudge)}},
			{"judge-to-local", []expr.Any{payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1), lookup(setNodeCIDRs, reg1), verdict(expr.VerdictGoto, chainJudge)}},
		},
		chainJudge: slices.Concat(
			[]taggedRule{{"fresh", []expr.Any{verdict(expr.VerdictJump, chainFresh)}}},
			both("unknown-src", func(r bool) []expr.Any {
				return []expr.Any{src(r), lookup(setGuarded, reg1), notIn(setKnown, reg1), counter(), verdict(expr.VerdictGoto, chainUnknown)}
			}),
			both("unknown-dst", func(r bool) []expr.Any {
				return []expr.Any{dst(r), lookup(setGuarded, reg1), notIn(setKnown, reg1), counter(), verdict(expr.VerdictGoto, chainUnknown)}
			}),
			both("egress", func(r bool) []expr.Any { return []expr.Any{src(r), vmap(mapEgress, reg1)} }),
			both("ingress", func(r bool) []expr.Any { return []expr.Any{dst(r), vmap(mapIngress, reg1)} }),
			[]taggedRule{{"stamp", []expr.Any{verdict(expr.VerdictGoto, chainStamp)}}},
		),
	}
}

// genRules returns the one rule of chain fresh and of chain stamp for
// generation g.
func genRules(g uint32) (fresh, stamp taggedRule) {
	mark := func(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }
	fresh = taggedRule{genTag(g), []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mark(genMask), Xor: mark(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: mark(g << genShift)},
		verdict(expr.VerdictAccept, "")}}
	stamp = taggedRule{genTag(g), []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mark(^genMask), Xor: mark(g << genShift)},
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK, SourceRegister: true},
		verdict(expr.VerdictAccept, "")}}
	return fresh, stamp
}

// vruleRules renders one verdict rule of a chain of direction dir as its
// pair of nftables rules.
func vruleRules(dir netpol.Direction, r netpol.VRule) []taggedRule {
	return both(tagVRule+r.Key(), func(reply bool) []expr.Any {
		var ex []expr.Any
		switch r.Kind {
		case netpol.AddrPeer, netpol.CIDRPeer:
			peer := src(reply)
			if dir == netpol.Out {
				peer = dst(reply)
			}
			ex = append(ex, peer, lookup(r.Set, reg1))
		case netpol.TuplePeer:
			// destination . protocol . port, laid out as nft does.
			ex = append(ex, dst(reply), l4proto(reg32+1), dport(reply, reg32+2), lookup(r.Set, reg1))
		}
		if r.Proto != 0 {
			ex = append(ex, l4proto(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{r.Proto}})
		}
		if r.Ports != "" {
			ex = append(ex, dport(reply, reg1), lookup(r.Ports, reg1))
		}
		return append(ex, verdict(expr.VerdictReturn, ""))
	})
}

func dropExprs() []expr.Any {
	return []expr.Any{&expr.Counter{}, verdict(expr.VerdictDrop, "")}
}

// unknownRules are the rules of chain unknown: the log rule when drops
// are logged, then the drop (the judge chain's rules that go here count).
func unknownRules(l DropLog) []taggedRule {
	var out []taggedRule
	if l.Rate > 0 {
		out = append(out, logRule(l, LogPrefixUnknown))
	}
	return append(out, taggedRule{tagFixed + "drop", []expr.Any{verdict(expr.VerdictDrop, "")}})
}

// logRule hands the packet to NFLOG group l.Group with prefix (a verdict
// chain's name, or LogPrefixUnknown), at most l.Rate packets a second
// through this rule: a flood of denied packets costs the node a few log
// lines, not a netlink message per packet.
func logRule(l DropLog, prefix string) taggedRule {
	return taggedRule{tagLog + l.spec(), []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Unit: expr.LimitTimeSecond, Burst: l.Rate},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_SNAPLEN,
			Group: l.Group, Data: []byte(prefix), Snaplen: logSnaplen},
	}}
}

// logSnaplen is how much of a logged packet the kernel hands over: the
// IPv4 header with options and the first bytes of the transport header
// (the ports).
const logSnaplen = 64 + 8

// Element encodings.

func addrKey(a netip.Addr) []byte { b := a.As4(); return b[:] }

func next4(a netip.Addr) (netip.Addr, bool) {
	n := a.Next()
	return n, n.IsValid() && n.Is4()
}

func rangeElems(rs []netpol.AddrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: addrKey(r.First)})
		if end, ok := next4(r.Last); ok {
			out = append(out, nftables.SetElement{Key: addrKey(end), IntervalEnd: true})
		}
	}
	return out
}

// prefixRanges turns prefixes into sorted, disjoint ranges, joining
// overlapping and adjacent ones (an interval set refuses both).
func prefixRanges(ps []netip.Prefix) []netpol.AddrRange {
	type r32 struct{ lo, hi uint32 }
	var rs []r32
	for _, p := range ps {
		p = p.Masked()
		if !p.Addr().Is4() {
			continue
		}
		lo := p.Addr().As4()
		v := binary.BigEndian.Uint32(lo[:])
		rs = append(rs, r32{v, v | (1<<(32-p.Bits()) - 1)})
	}
	slices.SortFunc(rs, func(a, b r32) int { return cmp.Compare(a.lo, b.lo) })
	var out []netpol.AddrRange
	for i := 0; i < len(rs); {
		cur := rs[i]
		for i++; i < len(rs) && uint64(rs[i].lo) <= uint64(cur.hi)+1; i++ {
			cur.hi = max(cur.hi, rs[i].hi)
		}
		out = append(out, netpol.AddrRange{First: u32Addr(cur.lo), Last: u32Addr(cur.hi)})
	}
	return out
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func portElems(rs []netpol.PortRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.First)})
		if r.Last < 65535 {
			out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.Last + 1), IntervalEnd: true})
		}
	}
	return out
}

func tupleKey(t netpol.Tuple) []byte {
	k := make([]byte, 12)
	a := t.Addr.As4()
	copy(k, a[:])
	k[4] = t.Proto
	binary.BigEndian.PutUint16(k[8:], t.Port)
	return k
}

var tupleType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// regularChains are the fixed chains besides the base chain.
var regularChains = []string{chainJudge, chainFresh, chainStamp, chainUnknown}

func payload(base expr.PayloadBase, off, n, reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
}
