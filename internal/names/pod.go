package names

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
)

// HostVethName is the host end's name: the veth prefix and a hash of the
// attachment, so that DEL, GC and weft doctor find it from the container
// id and interface alone, and two attachments never share a name. It is
// 15 bytes, the kernel's limit.
func HostVethName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return VethPrefix + hex.EncodeToString(sum[:])[:15-len(VethPrefix)]
}

// PodMAC derives the MAC of the pod interface that holds address a
// (locally administered, unicast). A pod that gets an address again, or a
// new pod that gets a recently freed one, keeps the MAC its neighbours
// have cached; ADD needs no extra netlink read to report it; and the
// agent's pod guard lets a pod send from this MAC only.
func PodMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

// PodAddrOfMAC inverts PodMAC: the address of the pod whose interface has
// mac, or the zero Addr when mac is not one PodMAC derived.
func PodAddrOfMAC(mac []byte) netip.Addr {
	if len(mac) != 6 || mac[0] != 0x0a || mac[1] != 0x58 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(mac[2:6]))
}

// HostMAC is the host end's MAC, fixed for the attachment for the same
// reason: ADD reports it without reading it back.
func HostMAC(containerID, ifname string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(ifname + "\x00" + containerID))
	return net.HardwareAddr{0x0a, 0x59, sum[0], sum[1], sum[2], sum[3]}
}
