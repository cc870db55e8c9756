package cluster

import (
	"net/netip"
	"slices"
	"testing"
)

func TestSubnetsEnumeratesTheClusterCIDRInOrder(t *testing.T) {
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name  string
		cidr  string
		bits  int
		first []string // the first few subnets yielded
		count int
	}{
		{"/16 in /24s", "10.244.0.0/16", 24, []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"}, 256},
		{"unmasked cidr", "10.244.7.9/16", 24, []string{"10.244.0.0/24"}, 256},
		{"the cidr itself", "10.244.3.0/24", 24, []string{"10.244.3.0/24"}, 1},
		{"/30s", "192.168.0.0/28", 30, []string{"192.168.0.0/30", "192.168.0.4/30", "192.168.0.8/30", "192.168.0.12/30"}, 4},
		{"top of the address space", "255.255.254.0/23", 24, []string{"255.255.254.0/24", "255.255.255.0/24"}, 2},
		{"bits shorter than cidr", "10.244.0.0/16", 8, nil, 0},
		{"bits past 32", "10.244.0.0/16", 33, nil, 0},
		{"IPv6", "fd00::/64", 80, nil, 0},
		{"invalid", "", 24, nil, 0},
	} {
		var cidr netip.Prefix
		if c.cidr != "" {
			cidr = p(c.cidr)
		}
		var got []string
		n := 0
		for s := range Subnets(cidr, c.bits) {
			if n < len(c.first) {
				got = append(got, s.String())
			}
			n++
		}
		if !slices.Equal(got, c.first) || n != c.count {
			t.Errorf("%s: Subnets(%s, %d) began %v and yielded %d; want %v and %d", c.name, c.cidr, c.bits, got, n, c.first, c.count)
		}
	}
	// Stopping early stops the enumeration (a full /8 in /30s is 4M).
	n := 0
	for range Subnets(p("10.0.0.0/8"), 30) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("break after 3 gave %d", n)
	}
}
