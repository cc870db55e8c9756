package fakepeers

import "testing"

// Every fake peer is distinct and inside the ranges the package promises:
// a clash would make a benchmark program fewer peers than it claims, an
// address outside them could reach something real.
func TestFakePeersAreDistinctAndStayInTheirRanges(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Nodes(Max) {
		if !Underlay.Contains(p.UnderlayIP) {
			t.Errorf("%s: underlay %s outside %s", p.Name, p.UnderlayIP, Underlay)
		}
		if !Subnets.Contains(p.Subnet.Addr()) || p.Subnet.Bits() != 24 {
			t.Errorf("%s: subnet %s is not a /24 of %s", p.Name, p.Subnet, Subnets)
		}
		if !ClusterCIDR.Contains(p.Subnet.Addr()) {
			t.Errorf("%s: subnet %s outside the cluster CIDR %s", p.Name, p.Subnet, ClusterCIDR)
		}
		for _, k := range []string{p.Name, p.UnderlayIP.String(), p.Subnet.String(), p.VTEPMAC} {
			if seen[k] {
				t.Errorf("%s: %s used twice", p.Name, k)
			}
			seen[k] = true
		}
	}
}
