package ipam

import "net/netip"

// Capacity is how many pod addresses subnet can hand out: all of its
// addresses but the network address, the gateway (the bridge's) and the
// broadcast address. It is the range Allocate draws from, so a count of
// free addresses made from it agrees with what the plugin can still give.
func Capacity(subnet netip.Prefix) int {
	if CheckSubnet(subnet) != nil {
		return 0
	}
	first, last := span(subnet)
	return int(last-first) + 1
}
