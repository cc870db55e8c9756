package netpol

import "net/netip"

// allowed interprets a State the way the nftables rules built from it
// judge a connection's first packet on this node: the source's egress
// chain (if the source is an isolated local pod), then the destination's
// ingress chain, with unknown local addresses dropped while Guarded.
// netpolnft's tests check the kernel against the same expectations.
func allowed(st *State, src, dst netip.Addr, proto uint8, port uint16) bool {
	known := map[netip.Addr]bool{}
	for _, a := range st.Known {
		known[a] = true
	}
	for _, a := range []netip.Addr{src, dst} {
		if st.Guarded && inAny(st.NodeCIDRs, a) && !known[a] {
			return false
		}
	}
	if ch, ok := st.Egress[src]; ok && !chainAllows(st, st.Chains[ch], dst, dst, proto, port) {
		return false
	}
	if ch, ok := st.Ingress[dst]; ok && !chainAllows(st, st.Chains[ch], src, dst, proto, port) {
		return false
	}
	return true
}

func chainAllows(st *State, c *Chain, peer, dst netip.Addr, proto uint8, port uint16) bool {
	for _, r := range c.Rules {
		if ruleAllows(st, r, peer, dst, proto, port) {
			return true
		}
	}
	return false
}

func ruleAllows(st *State, r VRule, peer, dst netip.Addr, proto uint8, port uint16) bool {
	switch r.Kind {
	case AddrPeer:
		found := false
		for _, a := range st.AddrSets[r.Set] {
			found = found || a == peer
		}
		if !found {
			return false
		}
	case CIDRPeer:
		if !inRanges(st.CIDRSets[r.Set], peer) {
			return false
		}
	case TuplePeer:
		for _, t := range st.TupleSets[r.Set] {
			if t == (Tuple{dst, proto, port}) {
				return true
			}
		}
		return false
	}
	if r.Proto != 0 && r.Proto != proto {
		return false
	}
	if r.Ports != "" {
		for _, pr := range st.PortSets[r.Ports] {
			if pr.First <= port && port <= pr.Last {
				return true
			}
		}
		return false
	}
	return true
}
