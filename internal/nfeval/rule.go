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
