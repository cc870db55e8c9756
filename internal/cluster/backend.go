package cluster

import "fmt"

// Backend is how a node reaches its peers' pod subnets.
type Backend string

// The backends a node can run. "auto" picks, per peer, a direct route when
// the peer shares this node's L2 segment and VXLAN otherwise.
const (
	BackendAuto   Backend = "auto"
	BackendHostGW Backend = "host-gw"
	BackendVXLAN  Backend = "vxlan"
)

// Backends lists every valid backend, in the order the help text gives.
var Backends = []Backend{BackendAuto, BackendHostGW, BackendVXLAN}

// ParseBackend turns a flag or config value into a Backend; empty means
// auto.
func ParseBackend(s string) (Backend, error) {
	if s == "" {
		return BackendAuto, nil
	}
	b := Backend(s)
	if !b.Valid() {
		return "", fmt.Errorf("unknown backend %q (want auto, host-gw or vxlan)", s)
	}
	return b, nil
}

// Valid reports whether b is one of Backends.
func (b Backend) Valid() bool {
	return b == BackendAuto || b == BackendHostGW || b == BackendVXLAN
}

// UsesVXLAN reports whether a node with this backend runs a VXLAN device:
// with vxlan, and with auto, where any peer may turn out to be off-segment.
func (b Backend) UsesVXLAN() bool { return b != BackendHostGW }

// Overhead is what the backend may add to a pod's packet on the underlay:
// the VXLAN encapsulation whenever the node runs a VXLAN device.
func (b Backend) Overhead() int {
	if b.UsesVXLAN() {
		return VXLANOverhead
	}
	return 0
}

// PodMTU is the largest MTU pods can use over an underlay link of
// underlayMTU with this backend.
func (b Backend) PodMTU(underlayMTU int) int { return underlayMTU - b.Overhead() }

// UnderlayMTUFor is the underlay interface MTU from which this backend
// derives a pod MTU of podMTU.
func (b Backend) UnderlayMTUFor(podMTU int) int { return podMTU + b.Overhead() }

func (b Backend) String() string { return string(b) }

// VXLANOverhead is what VXLAN encapsulation adds to each packet over an
// IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
const VXLANOverhead = 50

// MinMTU is the smallest pod MTU Weft accepts: IPv4's minimum datagram
// size that every host must accept (RFC 791).
const MinMTU = 576

// CheckPodMTU says why a pod MTU cannot be used, or nil.
func CheckPodMTU(mtu int) error {
	if mtu < MinMTU {
		return fmt.Errorf("pod MTU %d is below IPv4's minimum of %d", mtu, MinMTU)
	}
	return nil
}

// Set makes a Backend a flag.Value: a flag refuses an unknown name when it
// is parsed, with the list of valid ones.
func (b *Backend) Set(s string) error {
	v, err := ParseBackend(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
