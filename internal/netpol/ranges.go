package netpol

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// blockRanges turns an IPv4 ipBlock into the sorted, disjoint ranges it
// covers once its excepts are cut out; nil for an IPv6 block.
func blockRanges(b IPBlock) []AddrRange {
	if !b.CIDR.Addr().Is4() {
		return nil
	}
	type r32 struct{ lo, hi uint32 }
	span := func(p netip.Prefix) r32 {
		p = p.Masked()
		lo := u32(p.Addr())
		return r32{lo, lo | (1<<(32-p.Bits()) - 1)}
	}
	out := []r32{span(b.CIDR)}
	for _, e := range b.Except {
		if !e.Addr().Is4() {
			continue
		}
		x := span(e)
		var next []r32
		for _, r := range out {
			if x.hi < r.lo || x.lo > r.hi {
				next = append(next, r)
				continue
			}
			if x.lo > r.lo {
				next = append(next, r32{r.lo, x.lo - 1})
			}
			if x.hi < r.hi {
				next = append(next, r32{x.hi + 1, r.hi})
			}
		}
		out = next
	}
	ranges := make([]AddrRange, 0, len(out))
	for _, r := range out {
		ranges = append(ranges, AddrRange{addr(r.lo), addr(r.hi)})
	}
	if len(ranges) == 0 {
		// Everything excepted: a set that matches nothing (an empty
		// interval set would do, but a rule needs a set to name).
		return []AddrRange{}
	}
	return ranges
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func rangesKey(rs []AddrRange) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s-%s,", r.First, r.Last)
	}
	return b.String()
}

func inRanges(rs []AddrRange, a netip.Addr) bool {
	for _, r := range rs {
		if r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0 {
			return true
		}
	}
	return false
}

// mergePorts sorts port ranges and joins those that overlap or touch:
// nftables refuses overlapping intervals in one set.
func mergePorts(rs []PortRange) []PortRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].First < rs[j].First })
	out := []PortRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			if r.Last > last.Last {
				last.Last = r.Last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func portsKey(rs []PortRange) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d-%d,", r.First, r.Last)
	}
	return b.String()
}
