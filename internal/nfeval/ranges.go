package nfeval

import (
	"slices"
	"sort"
)

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
