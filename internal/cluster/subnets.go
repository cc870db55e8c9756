package cluster

import (
	"iter"
	"net/netip"
)

// Subnets yields every subnet of length bits inside the IPv4 prefix cidr,
// in address order: the candidates a datastore leases to nodes. It yields
// nothing when cidr is not IPv4 or bits does not fit inside it (shorter
// than cidr's or longer than 32). Counting in 64 bits keeps the last
// subnet of a CIDR that ends at 255.255.255.255 from wrapping to 0.0.0.0.
func Subnets(cidr netip.Prefix, bits int) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		if !cidr.IsValid() || !cidr.Addr().Is4() || bits < cidr.Bits() || bits > 32 {
			return
		}
		base := cidr.Masked().Addr().As4()
		start := uint64(base[0])<<24 | uint64(base[1])<<16 | uint64(base[2])<<8 | uint64(base[3])
		count := uint64(1) << (bits - cidr.Bits())
		step := uint64(1) << (32 - bits)
		for i := range count {
			v := start + i*step
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			if !yield(netip.PrefixFrom(a, bits)) {
				return
			}
		}
	}
}
