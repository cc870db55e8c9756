// Package fakepeers makes peer records for measuring how Weft scales
// with the number of nodes, without those nodes: records whose underlay
// addresses are in 198.18.0.0/15 (RFC 2544's benchmarking range), where
// no lab or test namespace has a route, so that nothing an agent programs
// for them can send a packet anywhere. Their subnets are /24s of
// 10.8.0.0/13, the upper half of a 10.0.0.0/12 cluster CIDR, away from
// the leases real nodes get. The benchmark and the tests share it.
package fakepeers

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/cluster"
)

var (
	// Underlay holds every fake peer's underlay address.
	Underlay = netip.MustParsePrefix("198.18.0.0/15")
	// Subnets holds every fake peer's pod subnet.
	Subnets = netip.MustParsePrefix("10.8.0.0/13")
	// ClusterCIDR is a cluster CIDR that holds Subnets in its upper half.
	ClusterCIDR = netip.MustParsePrefix("10.0.0.0/12")
)

// Max is how many fake peers there can be: the /24s in Subnets.
const Max = 2048

// Node is fake peer i (0 ≤ i < Max): a VXLAN node with its own underlay
// address, /24 and the VTEP MAC its address derives.
func Node(i int) cluster.Node {
	ip := [4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}
	return cluster.Node{
		Name:       fmt.Sprintf("peer%04d", i),
		UnderlayIP: netip.AddrFrom4(ip),
		Subnet:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 8 + byte(i>>8), byte(i), 0}), 24),
		// The MAC its underlay address derives (datapath.VTEPMAC): agents
		// refuse a record with any other.
		VTEPMAC: fmt.Sprintf("0e:76:%02x:%02x:%02x:%02x", ip[0], ip[1], ip[2], ip[3]),
		Backend: cluster.BackendVXLAN,
		Version: "bench",
	}
}

// Nodes is fake peers 0 to n-1.
func Nodes(n int) []cluster.Node {
	out := make([]cluster.Node, n)
	for i := range out {
		out[i] = Node(i)
	}
	return out
}
