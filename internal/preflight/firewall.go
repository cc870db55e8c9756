package preflight

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// The firewall check reads the nftables ruleset (iptables-nft's rules are
// part of it) and works out, for a port, what the base chains on the input
// path do with a new packet to it. It understands the matches that decide
// on ports (l4proto, th dport, port sets and ranges, iptables' tcp/udp
// matches) and treats every other match as a condition it cannot judge.
// Rules that are conditional and not about ports (ct state, iifname lo,
// kube-proxy's martian filter) are skipped; port rules with conditions
// turn a verdict into a warning rather than a failure.

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi uint16 }

type ranges []portRange // nil: any port

func (rs ranges) has(p uint16) bool {
	if rs == nil {
		return true
	}
	for _, r := range rs {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

func intersect(a, b ranges) ranges {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	out := ranges{}
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.lo, y.lo), min(x.hi, y.hi)
			if lo <= hi {
				out = append(out, portRange{lo, hi})
			}
		}
	}
	return out
}

func complement(rs ranges) ranges {
	sorted := slices.Clone(rs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].lo < sorted[j].lo })
	out := ranges{}
	next := 0
	for _, r := range sorted {
		if int(r.lo) > next {
			out = append(out, portRange{uint16(next), r.lo - 1})
		}
		next = max(next, int(r.hi)+1)
	}
	if next <= 65535 {
		out = append(out, portRange{uint16(next), 65535})
	}
	return out
}

// ruleMatch is what one rule means for a new packet to a port.
type ruleMatch struct {
	proto  uint8  // unix.IPPROTO_TCP/UDP, 0 for any
	ports  ranges // destination ports; nil for any
	cond   bool   // has conditions other than protocol and port
	skip   bool   // cannot match IPv4 traffic at all
	kind   expr.VerdictKind
	final  bool   // has a verdict (accept, drop, reject, jump, goto, return)
	target string // chain for jump and goto
	desc   string
}

func (m ruleMatch) matches(proto uint8, port uint16) bool {
	return !m.skip && (m.proto == 0 || m.proto == proto) && m.ports.has(port)
}

type regKind int

const (
	regOther regKind = iota
	regL4Proto
	regDPort
	regNFProto
)

// parseRule reads a rule's expressions into a ruleMatch. sets resolves a
// named (or anonymous) set to its port ranges, or ok=false when it is not
// a set of ports.
func parseRule(r *nftables.Rule, sets func(name string) (ranges, bool)) ruleMatch {
	m := ruleMatch{desc: fmt.Sprintf("table %s %s chain %s rule handle %d", family(r.Table.Family), r.Table.Name, r.Chain.Name, r.Handle)}
	regs := map[uint32]regKind{}
	constrainPorts := func(rs ranges) { m.ports = intersect(m.ports, rs) }
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			switch {
			case e.SourceRegister:
				// A statement (meta mark set ...), not a match.
			case e.Key == expr.MetaKeyL4PROTO:
				regs[e.Register] = regL4Proto
			case e.Key == expr.MetaKeyNFPROTO:
				regs[e.Register] = regNFProto
			default:
				regs[e.Register] = regOther
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				continue
			}
			if e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2 {
				regs[e.DestRegister] = regDPort
			} else {
				regs[e.DestRegister] = regOther
			}
		case *expr.Cmp:
			switch regs[e.Register] {
			case regL4Proto:
				if e.Op == expr.CmpOpEq && len(e.Data) == 1 {
					m.proto = e.Data[0]
				} else {
					m.cond = true
				}
			case regNFProto:
				if len(e.Data) == 1 && ((e.Op == expr.CmpOpEq) != (e.Data[0] == unix.NFPROTO_IPV4)) {
					m.skip = true
				}
			case regDPort:
				if len(e.Data) != 2 {
					m.cond = true
					continue
				}
				p := binary.BigEndian.Uint16(e.Data)
				switch e.Op {
				case expr.CmpOpEq:
					constrainPorts(ranges{{p, p}})
				case expr.CmpOpNeq:
					constrainPorts(complement(ranges{{p, p}}))
				case expr.CmpOpLt:
					constrainPorts(below(p, false))
				case expr.CmpOpLte:
					constrainPorts(below(p, true))
				case expr.CmpOpGt:
					constrainPorts(complement(below(p, true)))
				case expr.CmpOpGte:
					constrainPorts(complement(below(p, false)))
				}
			default:
				m.cond = true
			}
		case *expr.Range:
			if regs[e.Register] != regDPort || len(e.FromData) != 2 || len(e.ToData) != 2 {
				m.cond = true
				continue
			}
			rs := ranges{{binary.BigEndian.Uint16(e.FromData), binary.BigEndian.Uint16(e.ToData)}}
			if e.Op == expr.CmpOpNeq {
				rs = complement(rs)
			}
			constrainPorts(rs)
		case *expr.Lookup:
			rs, ok := sets(e.SetName)
			if regs[e.SourceRegister] != regDPort || e.IsDestRegSet || !ok {
				m.cond = true
				continue
			}
			if e.Invert {
				rs = complement(rs)
			}
			constrainPorts(rs)
		case *expr.Match:
			switch info := e.Info.(type) {
			case *xt.Tcp:
				m.proto = unix.IPPROTO_TCP
				m.cond = m.cond || info.SrcPorts != [2]uint16{0, 65535} || info.FlagsMask != 0 || info.Option != 0
				rs := ranges{{info.DstPorts[0], info.DstPorts[1]}}
				if info.InvFlags&xt.TcpInvDestPorts != 0 {
					rs = complement(rs)
				}
				constrainPorts(rs)
			case *xt.Udp:
				m.proto = unix.IPPROTO_UDP
				m.cond = m.cond || info.SrcPorts != [2]uint16{0, 65535}
				rs := ranges{{info.DstPorts[0], info.DstPorts[1]}}
				if info.InvFlags&xt.UdpInvDestPorts != 0 {
					rs = complement(rs)
				}
				constrainPorts(rs)
			default:
				if e.Name != "comment" {
					m.cond = true
				}
			}
		case *expr.Target:
			if e.Name == "REJECT" {
				m.kind, m.final = expr.VerdictDrop, true
			}
		case *expr.Reject:
			m.kind, m.final = expr.VerdictDrop, true
		case *expr.Verdict:
			m.kind, m.final, m.target = e.Kind, true, e.Chain
		case *expr.Counter, *expr.Log:
			// no effect on the verdict
		case *expr.Bitwise:
			regs[e.DestRegister] = regOther
		case *expr.Ct:
			regs[e.Register] = regOther
		default:
			// Anything else (limit, quota, fib, socket, ...) only lets some
			// packets through to the verdict.
			m.cond = true
		}
	}
	return m
}

// below is the ports under p (or up to p with inclusive).
func below(p uint16, inclusive bool) ranges {
	if inclusive {
		return ranges{{0, p}}
	}
	if p == 0 {
		return ranges{}
	}
	return ranges{{0, p - 1}}
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	}
	return fmt.Sprint(f)
}

// chainRules is a chain with its rules already parsed.
type chainRules struct {
	chain *nftables.Chain
	rules []ruleMatch
}

// ruleset is the part of the nftables ruleset that can drop an IPv4
// packet addressed to this node: filter chains on the prerouting and
// input hooks of ip and inet tables, and the chains they jump to.
type ruleset struct {
	base   []*chainRules
	chains map[string]*chainRules // "family table chain"
}

func loadRuleset() (*ruleset, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	byKey := map[string]*nftables.Chain{}
	var queue []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Family != nftables.TableFamilyINet && ch.Table.Family != nftables.TableFamilyIPv4 {
			continue
		}
		byKey[chainKey(ch.Table, ch.Name)] = ch
		if ch.Hooknum != nil && ch.Type == nftables.ChainTypeFilter &&
			(*ch.Hooknum == *nftables.ChainHookInput || *ch.Hooknum == *nftables.ChainHookPrerouting) {
			queue = append(queue, ch)
		}
	}

	// Only the base chains and what they jump to are read: a node with
	// kube-proxy in iptables mode has thousands of NAT rules that cannot
	// drop anything.
	rs := &ruleset{chains: map[string]*chainRules{}}
	setCache := map[string]ranges{}
	for len(queue) > 0 {
		ch := queue[0]
		queue = queue[1:]
		key := chainKey(ch.Table, ch.Name)
		if rs.chains[key] != nil {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", key, err)
		}
		cr := &chainRules{chain: ch}
		sets := func(name string) (ranges, bool) {
			skey := chainKey(ch.Table, "@"+name)
			if r, ok := setCache[skey]; ok {
				return r, r != nil
			}
			r := portSet(c, ch.Table, name)
			setCache[skey] = r
			return r, r != nil
		}
		for _, r := range rules {
			m := parseRule(r, sets)
			cr.rules = append(cr.rules, m)
			if target := byKey[chainKey(ch.Table, m.target)]; m.target != "" && target != nil {
				queue = append(queue, target)
			}
		}
		rs.chains[key] = cr
		if ch.Hooknum != nil {
			rs.base = append(rs.base, cr)
		}
	}
	return rs, nil
}

func chainKey(t *nftables.Table, chain string) string {
	return family(t.Family) + " " + t.Name + " " + chain
}

// portSet reads a set of ports as ranges; nil when it is anything else.
func portSet(c *nftables.Conn, t *nftables.Table, name string) ranges {
	s, err := c.GetSetByName(t, name)
	if err != nil || s.Concatenation || s.IsMap || s.KeyType.Bytes != 2 {
		return nil
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return nil
	}
	out := ranges{}
	if !s.Interval {
		for _, e := range elems {
			if len(e.Key) == 2 {
				p := binary.BigEndian.Uint16(e.Key)
				out = append(out, portRange{p, p})
			}
		}
		return out
	}
	// An interval set lists the start of each range and, flagged as an
	// interval end, the first port after it.
	sort.SliceStable(elems, func(i, j int) bool {
		return binary.BigEndian.Uint16(elems[i].Key) < binary.BigEndian.Uint16(elems[j].Key)
	})
	open, start := false, uint16(0)
	for _, e := range elems {
		if len(e.Key) != 2 {
			return nil
		}
		k := binary.BigEndian.Uint16(e.Key)
		switch {
		case len(e.KeyEnd) == 2:
			out = append(out, portRange{k, binary.BigEndian.Uint16(e.KeyEnd)})
		case !e.IntervalEnd:
			if open && k > start {
				out = append(out, portRange{start, k - 1})
			}
			open, start = true, k
		case open && k > start:
			out = append(out, portRange{start, k - 1})
			open = false
		}
	}
	if open {
		out = append(out, portRange{start, 65535})
	}
	return out
}

// outcome is what one base chain does with a new packet to one port.
type outcome struct {
	dropped    bool
	by         string   // the rule or policy that drops it
	condAccept []string // port rules that accept only some of that traffic
	condDrop   []string // port rules that drop only some of it
}

type flow int

const (
	flowContinue flow = iota // fell off the end of a non-base chain or returned
	flowAccept
	flowDrop
)

// verdict evaluates the base chains for proto/port.
func (rs *ruleset) verdict(proto uint8, port uint16) []outcome {
	var out []outcome
	for _, b := range rs.base {
		var o outcome
		f, by := rs.eval(b, proto, port, false, &o, 0)
		if f == flowContinue && b.chain.Policy != nil && *b.chain.Policy == nftables.ChainPolicyDrop {
			f, by = flowDrop, fmt.Sprintf("the drop policy of table %s %s chain %s", family(b.chain.Table.Family), b.chain.Table.Name, b.chain.Name)
		}
		o.dropped, o.by = f == flowDrop, by
		out = append(out, o)
	}
	return out
}

// eval walks one chain. cond says the chain was entered through a rule
// with conditions, so what it decides applies only to some packets.
func (rs *ruleset) eval(c *chainRules, proto uint8, port uint16, cond bool, o *outcome, depth int) (flow, string) {
	if depth > 16 {
		return flowContinue, ""
	}
	for _, m := range c.rules {
		if !m.final || !m.matches(proto, port) {
			continue
		}
		conditional := cond || m.cond
		portRule := m.ports != nil
		switch m.kind {
		case expr.VerdictAccept:
			if !conditional {
				return flowAccept, m.desc
			}
			if portRule {
				o.condAccept = append(o.condAccept, m.desc)
			}
		case expr.VerdictDrop:
			if !conditional {
				return flowDrop, m.desc
			}
			// A port rule with conditions, or a plain drop in a chain
			// entered on conditions (say, one interface's zone), drops
			// some of the traffic to this port.
			if portRule || (cond && !m.cond) {
				o.condDrop = append(o.condDrop, m.desc)
			}
		case expr.VerdictJump, expr.VerdictGoto:
			sub := rs.chains[chainKey(c.chain.Table, m.target)]
			if sub == nil {
				continue
			}
			f, by := rs.eval(sub, proto, port, conditional, o, depth+1)
			if f != flowContinue && !conditional {
				return f, by
			}
			if m.kind == expr.VerdictGoto && !conditional {
				return flowContinue, ""
			}
		case expr.VerdictReturn:
			if !conditional {
				return flowContinue, ""
			}
		}
	}
	return flowContinue, ""
}
