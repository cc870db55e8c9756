package ipam

import (
	"net/netip"
	"testing"
)

func TestCapacityCountsWhatAllocateCanGive(t *testing.T) {
	for _, c := range []struct {
		subnet string
		want   int
	}{
		{"10.244.3.0/24", 253},
		{"10.244.0.0/16", 65533},
		{"10.244.3.0/30", 1},
		{"10.244.3.0/31", 0}, // too small for a pod
		{"10.244.3.7/24", 0}, // host bits set: not a subnet CheckSubnet accepts
		{"127.0.0.0/24", 0},  // reserved
		{"fd00::/120", 0},    // IPv6
	} {
		if got := Capacity(netip.MustParsePrefix(c.subnet)); got != c.want {
			t.Errorf("Capacity(%s) = %d, want %d", c.subnet, got, c.want)
		}
	}
}
