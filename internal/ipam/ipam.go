// Package ipam allocates pod addresses from the node's subnet. It owns one
// small file per network under the data directory (leases.json beside a
// lock file) and nothing else: no interfaces, no routes.
//
// Every change happens under an exclusive flock and is written with a
// rename, so dozens of plugin processes can allocate at once and a reader
// never sees half a file. Each write is synced, file and directory, before
// the address is reported: a lease the runtime was told about survives a
// power loss. The previous version stays beside the lease file as a spare;
// when the lease file is found damaged anyway (a disk that lied, a hand
// edit), the store recovers from the spare and from what the caller's
// Recovery says is in use (the kernel's veths, the runtime's cache),
// rather than failing every ADD and DEL from then on.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrFull means every usable address of the subnet is leased.
var ErrFull = errors.New("no free address")

// Lease is one address held by one attachment (container id + interface).
type Lease struct {
	Addr        netip.Addr `json:"ip"`
	ContainerID string     `json:"id"`
	IfName      string     `json:"if"`
	// Since is when the address was handed out (zero in files written
	// before it was recorded): doctor leaves young leases alone, as
	// their ADD may still be running.
	Since time.Time `json:"since,omitzero"`
	// Veth is set, and the attachment left empty, on a lease recovered
	// from a pod's host veth when nothing said which attachment made it.
	Veth string `json:"veth,omitempty"`
}

// Key identifies an attachment.
type Key struct{ ContainerID, IfName string }

// Key returns the attachment that holds the lease.
func (l Lease) Key() Key { return Key{l.ContainerID, l.IfName} }

// reserved are the IPv4 ranges a pod subnet must not touch: pods given
// these addresses would shadow the node's own (loopback, "this network"),
// or break protocols that own them (link-local, multicast, class E and
// broadcast).
var reserved = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast (240.0.0.0/4)"},
}

// MinBits is the shortest pod subnet accepted: a node's pods in anything
// wider than a /8 would cover most of the routing table, which is never
// what an operator meant.
const MinBits = 8

// CheckSubnet reports whether subnet can hold pods: IPv4, written with its
// host bits clear, between /8 and /30 (a /30 holds a network address, a
// gateway, one pod and a broadcast address), and clear of the reserved
// ranges.
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
	if subnet.Bits() < MinBits {
		return fmt.Errorf("subnet %s is too large: a pod subnet is a /%d or longer", subnet, MinBits)
	}
	for _, r := range reserved {
		if r.p.Overlaps(subnet) {
			return fmt.Errorf("subnet %s overlaps %s", subnet, r.why)
		}
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
