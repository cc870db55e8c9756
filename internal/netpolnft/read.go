package netpolnft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"

	"github.com/weftnet/weft/internal/netpol"
)

// read returns what the table holds, or ok=false when the table is
// missing or its fixed part is not exactly Weft's layout (then it is
// rebuilt whole, in one batch).
func read(c *nftables.Conn) (k *kstate, ok bool, err error) {
	t, err := findTable(c)
	if err != nil || t == nil {
		return nil, false, err
	}
	k = &kstate{st: emptyState(), dirty: map[string]bool{}, logs: map[string]string{}}
	if ok, err := k.readChains(c, t); err != nil || !ok {
		return nil, false, err
	}
	if ok, err := k.readSets(c, t); err != nil || !ok {
		return nil, false, err
	}
	return k, true, nil
}

// readChains reads the table's chains into k: the fixed ones must be
// exactly Weft's (ok=false otherwise), the verdict chains are taken
// back from their rules' tags (or marked dirty), and any other chain is
// a stray.
func (k *kstate) readChains(c *nftables.Conn, t *nftables.Table) (ok bool, err error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list chains of ip %s: %w", Table, err)
	}
	dumped, err := dumpRules()
	if err != nil {
		return false, err
	}
	tagsOf := map[string][]string{}
	for _, r := range dumped {
		tagsOf[r.chain] = append(tagsOf[r.chain], r.tag)
	}
	seen := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name != Table {
			continue
		}
		spec, tags := splitLog(tagsOf[ch.Name])
		k.logs[ch.Name] = spec
		switch name := ch.Name; {
		case name == chainForward || name == chainJudge || name == chainUnknown || name == chainFresh || name == chainStamp:
			if !k.readFixedChain(ch, t, tags) {
				return false, nil
			}
			seen[name] = true
		case strings.HasPrefix(name, "in-") || strings.HasPrefix(name, "eg-"):
			if vc, ok := chainFromTags(name, tags); ok && sameTags(chainTags(vc), tags) {
				k.st.Chains[name] = vc
			} else {
				k.st.Chains[name] = &netpol.Chain{}
				k.dirty[name] = true
			}
		default:
			k.strayChains = append(k.strayChains, name)
		}
	}
	for _, name := range append([]string{chainForward}, regularChains...) {
		if !seen[name] {
			return false, nil
		}
	}
	return true, nil
}

// readFixedChain reports whether the fixed chain ch holds exactly the
// rules of Weft's layout (tags), and takes the generation from the fresh
// and stamp chains into k (both must carry the same).
func (k *kstate) readFixedChain(ch *nftables.Chain, t *nftables.Table, tags []string) bool {
	switch name := ch.Name; name {
	case chainForward, chainJudge:
		if name == chainForward && !sameBase(ch, baseChain(t)) {
			return false
		}
		want := fixedRules()[name]
		if len(tags) != len(want) {
			return false
		}
		for i := range want {
			if tags[i] != tagFixed+want[i].tag {
				return false
			}
		}
		return true
	case chainUnknown:
		return len(tags) == 1 && tags[0] == tagFixed+"drop"
	default: // chainFresh, chainStamp
		if len(tags) != 1 || !strings.HasPrefix(tags[0], tagGen) {
			return false
		}
		g, err := strconv.ParseUint(strings.TrimPrefix(tags[0], tagGen), 10, 32)
		if err != nil || (k.gen != 0 && uint32(g) != k.gen) {
			return false
		}
		k.gen = uint32(g)
		return true
	}
}

// readSets reads the table's sets and maps into k; ok=false when one of
// the fixed ones is missing. A set named like none of Weft's is a stray.
func (k *kstate) readSets(c *nftables.Conn, t *nftables.Table) (ok bool, err error) {
	sets, err := c.GetSets(t)
	if err != nil {
		return false, fmt.Errorf("list sets of ip %s: %w", Table, err)
	}
	fixedSeen := 0
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return false, fmt.Errorf("list set %s: %w", s.Name, err)
		}
		if k.readSet(s.Name, elems) {
			fixedSeen++
		}
	}
	return fixedSeen == len(fixedSets(t)), nil
}

// readSet takes set name's elements into k, and reports whether it is one
// of the layout's fixed sets and maps.
func (k *kstate) readSet(name string, elems []nftables.SetElement) (fixed bool) {
	st := k.st
	switch {
	case name == setNodeCIDRs:
		st.NodeCIDRs = rangesPrefixes(addrRanges(elems))
		return true
	case name == setGuarded:
		st.Guarded = len(elems) > 0
		return true
	case name == setKnown:
		st.Known = addrs(elems)
		return true
	case name == mapIngress || name == mapEgress:
		m := st.Ingress
		if name == mapEgress {
			m = st.Egress
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				m[a] = e.Comment
			}
		}
		return true
	case strings.HasPrefix(name, "pods-"):
		st.AddrSets[name] = addrs(elems)
	case strings.HasPrefix(name, "cidr-"):
		st.CIDRSets[name] = addrRanges(elems)
	case strings.HasPrefix(name, "port-"):
		st.PortSets[name] = portRanges(elems)
	case strings.HasPrefix(name, "named-"):
		st.TupleSets[name] = tuples(elems)
	default:
		k.straySets = append(k.straySets, name)
	}
	return false
}

func findTable(c *nftables.Conn) (*nftables.Table, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == Table {
			return t, nil
		}
	}
	return nil, nil
}

// sameBase compares what a base chain's rules cannot show: its hook,
// priority, type and policy.
func sameBase(have, want *nftables.Chain) bool {
	eq := func(a, b *nftables.ChainHook) bool { return a != nil && b != nil && *a == *b }
	pol := func(c *nftables.Chain) nftables.ChainPolicy {
		if c.Policy == nil {
			return nftables.ChainPolicyAccept
		}
		return *c.Policy
	}
	return have.Type == want.Type && eq(have.Hooknum, want.Hooknum) &&
		have.Priority != nil && *have.Priority == *want.Priority && pol(have) == pol(want)
}

func addrs(elems []nftables.SetElement) []netip.Addr {
	out := make([]netip.Addr, 0, len(elems))
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// addrRanges reads an interval set back: each start element runs to the
// next end element (exclusive), or to the top of the space.
func addrRanges(elems []nftables.SetElement) []netpol.AddrRange {
	sort.Slice(elems, func(i, j int) bool { return bytes.Compare(elems[i].Key, elems[j].Key) < 0 })
	out := []netpol.AddrRange{}
	for i, e := range elems {
		if e.IntervalEnd || len(e.Key) != 4 {
			continue
		}
		first := netip.AddrFrom4([4]byte(e.Key))
		last := netip.MustParseAddr("255.255.255.255")
		if i+1 < len(elems) && elems[i+1].IntervalEnd {
			last = netip.AddrFrom4([4]byte(elems[i+1].Key)).Prev()
		}
		out = append(out, netpol.AddrRange{First: first, Last: last})
	}
	return out
}

func portRanges(elems []nftables.SetElement) []netpol.PortRange {
	sort.Slice(elems, func(i, j int) bool { return bytes.Compare(elems[i].Key, elems[j].Key) < 0 })
	var out []netpol.PortRange
	for i, e := range elems {
		if e.IntervalEnd || len(e.Key) != 2 {
			continue
		}
		r := netpol.PortRange{First: binary.BigEndian.Uint16(e.Key), Last: 65535}
		if i+1 < len(elems) && elems[i+1].IntervalEnd {
			r.Last = binary.BigEndian.Uint16(elems[i+1].Key) - 1
		}
		out = append(out, r)
	}
	return out
}

func tuples(elems []nftables.SetElement) []netpol.Tuple {
	var out []netpol.Tuple
	for _, e := range elems {
		if len(e.Key) != 12 {
			continue
		}
		out = append(out, netpol.Tuple{Addr: netip.AddrFrom4([4]byte(e.Key[:4])), Proto: e.Key[4],
			Port: binary.BigEndian.Uint16(e.Key[8:10])})
	}
	return out
}

// rangesPrefixes turns ranges back into the fewest prefixes that cover
// them exactly.
func rangesPrefixes(rs []netpol.AddrRange) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range rs {
		lo, hi := r.First.As4(), r.Last.As4()
		a, b := uint64(binary.BigEndian.Uint32(lo[:])), uint64(binary.BigEndian.Uint32(hi[:]))
		for a <= b {
			bits := 32
			// The largest aligned block at a that ends by b.
			for bits > 0 {
				size := uint64(1) << (32 - bits + 1)
				if a%size != 0 || a+size-1 > b {
					break
				}
				bits--
			}
			out = append(out, netip.PrefixFrom(u32Addr(uint32(a)), bits))
			a += uint64(1) << (32 - bits)
		}
	}
	return out
}
