package netpol

import (
	"hash/fnv"
	"net/netip"
	"strconv"
)

// Compiler compiles again and again (an agent's every change), reusing
// the pod address sets and named-port sets of its previous compile whose
// inputs did not change: a set remembers a 64-bit fingerprint of the pods
// (and, for namespace selectors, the namespaces) it was computed from, and
// is reused only while that fingerprint is the same. Not safe for
// concurrent use.
type Compiler struct {
	addrs  map[string]cached[[]netip.Addr]
	tuples map[string]cached[[]Tuple]
	ns     map[string]*nsChains // by namespace, fingerprinted by its local pods and policies
	sizes  [3]int               // of the last State's Ingress, Egress and Known
}

type cached[T any] struct {
	fp uint64
	v  T
}

// peerFP fingerprints what a selector peer's pods are computed from: a
// pod selector alone reads the pods of the policy's namespace; a namespace
// selector reads the namespaces' labels and the pods of those it matches.
func (c *compilation) peerFP(ns string, pe Peer) uint64 {
	if pe.NamespaceSelector == nil {
		return c.fpNS[ns]
	}
	fp := c.fpNamespaces * 0x9e3779b97f4a7c15
	for _, ns := range c.matchingNamespaces(pe.NamespaceSelector) {
		fp += mix(c.fpNS[ns] ^ fingerprint(ns, nil, nil, netip.Addr{}))
	}
	return fp
}

// matchingNamespaces lists the namespaces with pods whose labels match s.
func (c *compilation) matchingNamespaces(s *Selector) []string {
	key := s.canonical()
	if nss, ok := c.nsMatch[key]; ok {
		return nss
	}
	var nss []string
	for _, ns := range c.nsNames {
		if s.Matches(c.nsLabels(ns)) {
			nss = append(nss, ns)
		}
	}
	c.nsMatch[key] = nss
	return nss
}

// fingerprint hashes what sets are computed from, independently of the
// order of labels and ports; sums of fingerprints stand for collections.
func fingerprint(id string, labels map[string]string, ports []NamedPort, ip netip.Addr) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	b, _ := ip.MarshalBinary()
	h.Write(b)
	sum := h.Sum64()
	for k, v := range labels {
		h.Reset()
		h.Write([]byte(k + "\x00" + v))
		sum += mix(h.Sum64())
	}
	for _, p := range ports {
		h.Reset()
		h.Write([]byte(p.Name + "\x00" + strconv.Itoa(int(p.Protocol)) + "/" + strconv.Itoa(int(p.Port))))
		sum += mix(h.Sum64() + 1)
	}
	return mix(sum)
}

// policyFP fingerprints everything of a policy that its chains are made
// from.
func policyFP(p *Policy) uint64 {
	b := make([]byte, 0, 256)
	b = append(b, p.Namespace+"/"+p.Name+" "+p.PodSelector.canonical()...)
	b = strconv.AppendBool(append(b, ' '), p.IngressIsolates)
	b = strconv.AppendBool(append(b, ' '), p.EgressIsolates)
	for d, rules := range [][]Rule{p.Ingress, p.Egress} {
		for _, r := range rules {
			b = strconv.AppendInt(append(b, '|'), int64(d), 10)
			for _, pe := range r.Peers {
				if pe.IPBlock != nil {
					b = append(b, " block="+pe.IPBlock.CIDR.String()...)
					for _, e := range pe.IPBlock.Except {
						b = append(b, ","+e.String()...)
					}
					continue
				}
				b = append(b, " "+pe.PodSelector.canonical()+"@"+pe.NamespaceSelector.canonical()...)
			}
			for _, pt := range r.Ports {
				b = strconv.AppendUint(append(b, ' '), uint64(pt.Protocol), 10)
				b = strconv.AppendUint(append(b, ':'), uint64(pt.Port), 10)
				b = strconv.AppendUint(append(b, '-'), uint64(pt.EndPort), 10)
				b = append(b, ":"+pt.Name...)
			}
		}
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// mix is a 64-bit finaliser (splitmix64's), so that sums of fingerprints
// do not cancel out.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
