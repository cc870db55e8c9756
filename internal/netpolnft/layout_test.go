package netpolnft

import (
	"net/netip"
	"slices"
	"testing"
)

// Node subnets become disjoint ranges (an interval set refuses overlaps)
// and read back as the prefixes that cover the same addresses.
func TestNodeCIDRRanges(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/16"),
		netip.MustParsePrefix("10.247.0.0/24"), netip.MustParsePrefix("10.247.1.0/24"), netip.MustParsePrefix("10.246.0.8/29")}
	rs := prefixRanges(ps)
	if len(rs) != 3 || rs[0].Last != netip.MustParseAddr("10.244.255.255") || rs[2].Last != netip.MustParseAddr("10.247.1.255") {
		t.Fatalf("ranges %v", rs)
	}
	back := rangesPrefixes(rs)
	want := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.246.0.8/29"), netip.MustParsePrefix("10.247.0.0/23")}
	if !slices.Equal(back, want) {
		t.Errorf("read back %v, want %v", back, want)
	}
}
