// Package nfeval evaluates the node's nftables ruleset (iptables-nft's
// rules are part of it) for one question: what do the base chains on the
// input path do with a new IPv4 packet to a given port? It understands the
// matches that decide on ports (l4proto, th dport, port sets and ranges,
// iptables' tcp/udp matches) and treats every other match as a condition
// it cannot judge. Rules that are conditional and not about ports (ct
// state, iifname lo, kube-proxy's martian filter) are skipped; port rules
// with conditions make an outcome conditional rather than a drop.
//
// It only reads the ruleset; weft preflight asks it about the ports Weft
// needs. Weft's own rules are written by package firewall.
package nfeval

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/weftnet/weft/internal/names"
)

// chainRules is a chain with its rules already parsed.
type chainRules struct {
	chain *nftables.Chain
	rules []ruleMatch
}

// Ruleset is the part of the nftables ruleset that can drop an IPv4
// packet addressed to this node: filter chains on the prerouting and
// input hooks of ip and inet tables, and the chains they jump to.
type Ruleset struct {
	base   []*chainRules
	chains map[string]*chainRules // "family table chain"
}

// Load reads the ruleset of the calling thread's network namespace.
func Load() (*Ruleset, error) {
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
		// Weft's own table drops VXLAN from hosts that are not peers, by
		// design: not something that blocks Weft's ports.
		if ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == names.NFTable {
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
	rs := &Ruleset{chains: map[string]*chainRules{}}
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

// Outcome is what one base chain does with a new packet to one port.
type Outcome struct {
	Dropped    bool
	By         string   // the rule or policy that drops it
	CondAccept []string // port rules that accept only some of that traffic
	CondDrop   []string // port rules that drop only some of it
}

type flow int

const (
	flowContinue flow = iota // fell off the end of a non-base chain or returned
	flowAccept
	flowDrop
)

// Verdict evaluates each base chain for a new packet of proto (an IPPROTO
// number) to port, one Outcome per chain.
func (rs *Ruleset) Verdict(proto uint8, port uint16) []Outcome {
	var out []Outcome
	for _, b := range rs.base {
		var o Outcome
		f, by := rs.eval(b, proto, port, false, &o, 0)
		if f == flowContinue && b.chain.Policy != nil && *b.chain.Policy == nftables.ChainPolicyDrop {
			f, by = flowDrop, fmt.Sprintf("the drop policy of table %s %s chain %s", family(b.chain.Table.Family), b.chain.Table.Name, b.chain.Name)
		}
		o.Dropped, o.By = f == flowDrop, by
		out = append(out, o)
	}
	return out
}

// eval walks one chain. cond says the chain was entered through a rule
// with conditions, so what it decides applies only to some packets.
func (rs *Ruleset) eval(c *chainRules, proto uint8, port uint16, cond bool, o *Outcome, depth int) (flow, string) {
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
				o.CondAccept = append(o.CondAccept, m.desc)
			}
		case expr.VerdictDrop:
			if !conditional {
				return flowDrop, m.desc
			}
			// A port rule with conditions, or a plain drop in a chain
			// entered on conditions (say, one interface's zone), drops
			// some of the traffic to this port.
			if portRule || (cond && !m.cond) {
				o.CondDrop = append(o.CondDrop, m.desc)
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
