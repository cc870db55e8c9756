// Package ipam allocates pod addresses from the node's subnet. It owns one
// small file per network under the data directory (leases.json beside a
// lock file) and nothing else: no interfaces, no routes.
//
// Every change happens under an exclusive flock and is written with a
// rename, so dozens of plugin processes can allocate at once and a reader
// never sees half a file. There is no fsync: the leases only describe pods
// whose network namespaces do not survive a reboot either, and GC clears
// whatever a crash leaves behind.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// ErrFull means every usable address of the subnet is leased.
var ErrFull = errors.New("no free address")

// Lease is one address held by one attachment (container id + interface).
type Lease struct {
	Addr        netip.Addr `json:"ip"`
	ContainerID string     `json:"id"`
	IfName      string     `json:"if"`
}

// Key identifies an attachment.
type Key struct{ ContainerID, IfName string }

// Key returns the attachment that holds the lease.
func (l Lease) Key() Key { return Key{l.ContainerID, l.IfName} }

// CheckSubnet reports whether subnet can hold pods: IPv4, written with its
// host bits clear, and large enough for a network address, a gateway, one
// pod and a broadcast address (/30 or larger).
func CheckSubnet(subnet netip.Prefix) error {
	if !subnet.IsValid() {
		return fmt.Errorf("invalid subnet")
	}
	if !subnet.Addr().Is4() {
		return fmt.Errorf("subnet %s: only IPv4 subnets are supported", subnet)
	}
	if subnet.Masked() != subnet {
		return fmt.Errorf("subnet %s has host bits set (the network is %s)", subnet, subnet.Masked())
	}
	if subnet.Bits() > 30 {
		return fmt.Errorf("subnet %s is too small: a /30 or larger leaves room for the gateway and a pod", subnet)
	}
	return nil
}

// Gateway is the subnet's first address, held by the node bridge.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// span returns the first and last address pods may get: after the gateway,
// before the broadcast address.
func span(subnet netip.Prefix) (first, last uint32) {
	a := subnet.Masked().Addr().As4()
	network := binary.BigEndian.Uint32(a[:])
	size := uint32(1) << (32 - subnet.Bits())
	return network + 2, network + size - 2
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
