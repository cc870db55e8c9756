package nfeval

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

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
	p := &ruleParser{
		m:    ruleMatch{desc: fmt.Sprintf("table %s %s chain %s rule handle %d", family(r.Table.Family), r.Table.Name, r.Chain.Name, r.Handle)},
		regs: map[uint32]regKind{},
		sets: sets,
	}
	for _, e := range r.Exprs {
		p.expr(e)
	}
	return p.m
}

// ruleParser follows a rule's expressions in order: which registers hold
// the protocol or the destination port, and what each comparison makes
// of the match.
type ruleParser struct {
	m    ruleMatch
	regs map[uint32]regKind
	sets func(name string) (ranges, bool)
}

func (p *ruleParser) constrainPorts(rs ranges) { p.m.ports = intersect(p.m.ports, rs) }

func (p *ruleParser) expr(e expr.Any) {
	m := &p.m
	switch e := e.(type) {
	case *expr.Meta:
		p.meta(e)
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			return
		}
		if e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2 {
			p.regs[e.DestRegister] = regDPort
		} else {
			p.regs[e.DestRegister] = regOther
		}
	case *expr.Cmp:
		p.cmp(e)
	case *expr.Range:
		if p.regs[e.Register] != regDPort || len(e.FromData) != 2 || len(e.ToData) != 2 {
			m.cond = true
			return
		}
		rs := ranges{{binary.BigEndian.Uint16(e.FromData), binary.BigEndian.Uint16(e.ToData)}}
		if e.Op == expr.CmpOpNeq {
			rs = complement(rs)
		}
		p.constrainPorts(rs)
	case *expr.Lookup:
		rs, ok := p.sets(e.SetName)
		if p.regs[e.SourceRegister] != regDPort || e.IsDestRegSet || !ok {
			m.cond = true
			return
		}
		if e.Invert {
			rs = complement(rs)
		}
		p.constrainPorts(rs)
	case *expr.Match:
		p.xtMatch(e)
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
		p.regs[e.DestRegister] = regOther
	case *expr.Ct:
		p.regs[e.Register] = regOther
	default:
		// Anything else (limit, quota, fib, socket, ...) only lets some
		// packets through to the verdict.
		m.cond = true
	}
}

// meta notes which register a meta load fills.
func (p *ruleParser) meta(e *expr.Meta) {
	switch {
	case e.SourceRegister:
		// A statement (meta mark set ...), not a match.
	case e.Key == expr.MetaKeyL4PROTO:
		p.regs[e.Register] = regL4Proto
	case e.Key == expr.MetaKeyNFPROTO:
		p.regs[e.Register] = regNFProto
	default:
		p.regs[e.Register] = regOther
	}
}

// cmp applies a comparison to what its register holds: the protocol, the
// family (a rule for another family cannot match) or the port.
func (p *ruleParser) cmp(e *expr.Cmp) {
	m := &p.m
	switch p.regs[e.Register] {
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
			return
		}
		p.constrainPorts(portsCompared(e.Op, binary.BigEndian.Uint16(e.Data)))
	default:
		m.cond = true
	}
}

// portsCompared are the ports that compare true with port under op.
func portsCompared(op expr.CmpOp, port uint16) ranges {
	switch op {
	case expr.CmpOpEq:
		return ranges{{port, port}}
	case expr.CmpOpNeq:
		return complement(ranges{{port, port}})
	case expr.CmpOpLt:
		return below(port, false)
	case expr.CmpOpLte:
		return below(port, true)
	case expr.CmpOpGt:
		return complement(below(port, true))
	case expr.CmpOpGte:
		return complement(below(port, false))
	}
	return nil
}

// xtMatch reads an iptables-nft match: tcp and udp name the protocol and
// destination ports; a comment matches everything; anything else is a
// condition.
func (p *ruleParser) xtMatch(e *expr.Match) {
	m := &p.m
	switch info := e.Info.(type) {
	case *xt.Tcp:
		m.proto = unix.IPPROTO_TCP
		m.cond = m.cond || info.SrcPorts != [2]uint16{0, 65535} || info.FlagsMask != 0 || info.Option != 0
		rs := ranges{{info.DstPorts[0], info.DstPorts[1]}}
		if info.InvFlags&xt.TcpInvDestPorts != 0 {
			rs = complement(rs)
		}
		p.constrainPorts(rs)
	case *xt.Udp:
		m.proto = unix.IPPROTO_UDP
		m.cond = m.cond || info.SrcPorts != [2]uint16{0, 65535}
		rs := ranges{{info.DstPorts[0], info.DstPorts[1]}}
		if info.InvFlags&xt.UdpInvDestPorts != 0 {
			rs = complement(rs)
		}
		p.constrainPorts(rs)
	default:
		if e.Name != "comment" {
			m.cond = true
		}
	}
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
