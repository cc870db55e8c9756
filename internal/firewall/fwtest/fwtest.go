// Package fwtest builds the packets that tests of Weft's nftables guards
// forge: VXLAN datagrams with an inner frame of the sender's choosing
// (IPv4, IPv4 behind a VLAN tag, IPv6, a Router Advertisement, ARP), as a
// process with a plain UDP socket can send them. Tests only.
package fwtest

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/weftnet/weft/internal/names"
)

// EtherTypes of the inner frames tests forge.
const (
	EtherIPv4   = 0x0800
	EtherARP    = 0x0806
	EtherIPv6   = 0x86dd
	Ether8021Q  = 0x8100 // a VLAN tag (C-tag)
	Ether8021AD = 0x88a8 // a QinQ service tag (S-tag)
)

// SenderMAC is the inner source MAC of every forged frame: made up,
// locally administered.
var SenderMAC = net.HardwareAddr{0x0a, 0x66, 0, 0, 0, 1}

// VXLAN is the payload of a UDP datagram to port 4789 on Weft's VNI:
// an Ethernet frame to vtep carrying an IPv4/UDP packet src → dst with
// payload, as a node's VTEP would send it, or an attacker would.
func VXLAN(vtep net.HardwareAddr, src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	return Encap(Ether(vtep, EtherIPv4, IPv4UDP(src, dst, payload)))
}

// Encap puts an Ethernet frame behind a VXLAN header on Weft's VNI.
func Encap(frame []byte) []byte {
	out := []byte{0x08, 0, 0, 0, 0, 0, byte(names.VNI), 0} // flags: VNI valid
	return append(out, frame...)
}

// Ether is an Ethernet frame from SenderMAC to dst with EtherType typ.
func Ether(dst net.HardwareAddr, typ uint16, body []byte) []byte {
	out := append([]byte{}, dst...)
	out = append(out, SenderMAC...)
	out = binary.BigEndian.AppendUint16(out, typ)
	return append(out, body...)
}

// Tagged is frame with a VLAN tag (tpid Ether8021Q or Ether8021AD, VLAN
// vid, priority 0) inserted after its MACs; VID 0 is a priority tag,
// which receivers take as untagged.
func Tagged(frame []byte, tpid, vid uint16) []byte {
	out := append([]byte{}, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, vid&0x0fff)
	return append(out, frame[12:]...)
}

// IPv4UDP is an IPv4 packet carrying a UDP datagram src → dst.
func IPv4UDP(src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	udp := udpHeader(40000, dst.Port(), payload) // checksum 0: none, allowed over IPv4
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s, d := src.As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip)))
	return append(ip, udp...)
}

// IPv6UDP is an IPv6 packet carrying a UDP datagram src → dst (IPv6
// requires its checksum).
func IPv6UDP(src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	udp := udpHeader(40000, dst.Port(), payload)
	binary.BigEndian.PutUint16(udp[6:], checksum6(src, dst.Addr(), 17, udp))
	return append(ipv6Header(src, dst.Addr(), 17, 64, len(udp)), udp...)
}

// RouterAdvertisement is an IPv6 packet from router (a link-local
// address) to all nodes, advertising itself as a default router for
// 1800 s, with SenderMAC as its link-layer address and prefix (a /64)
// for SLAAC.
func RouterAdvertisement(router netip.Addr, prefix netip.Prefix) []byte {
	ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	ra = append(ra, 1, 1) // source link-layer address option
	ra = append(ra, SenderMAC...)
	pi := []byte{3, 4, byte(prefix.Bits()), 0xc0} // prefix information: on-link, autonomous
	pi = binary.BigEndian.AppendUint32(pi, 86400)
	pi = binary.BigEndian.AppendUint32(pi, 14400)
	pi = append(pi, 0, 0, 0, 0)
	p := prefix.Masked().Addr().As16()
	ra = append(ra, append(pi, p[:]...)...)
	all := netip.MustParseAddr("ff02::1")
	binary.BigEndian.PutUint16(ra[2:], checksum6(router, all, 58, ra))
	return append(ipv6Header(router, all, 58, 255, len(ra)), ra...)
}

// ARPRequest is an ARP request from SenderMAC at sender for target.
func ARPRequest(sender, target netip.Addr) []byte {
	out := []byte{0, 1, 0x08, 0, 6, 4, 0, 1}
	out = append(out, SenderMAC...)
	s, t := sender.As4(), target.As4()
	out = append(out, s[:]...)
	out = append(out, 0, 0, 0, 0, 0, 0)
	return append(out, t[:]...)
}

// LinkLocal is the IPv6 link-local address the kernel derives from mac
// (EUI-64), the one a device holds unless told otherwise.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	a := [16]byte{0xfe, 0x80}
	copy(a[8:], []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	return netip.AddrFrom16(a)
}

// SendVXLAN sends one datagram with VXLAN payload b to node:4789 from the
// calling thread's network namespace.
func SendVXLAN(node netip.Addr, b []byte) error {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(node, names.VXLANPort)))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(b)
	return err
}

func udpHeader(src, dst uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src)
	binary.BigEndian.PutUint16(udp[2:], dst)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(udp, payload...)
}

func ipv6Header(src, dst netip.Addr, next byte, hops byte, length int) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(length))
	h[6], h[7] = next, hops
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return h
}

// checksum6 is the checksum of an upper-layer message over IPv6 (RFC
// 8200's pseudo-header: addresses, length, next header).
func checksum6(src, dst netip.Addr, next byte, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	pseudo := append(append([]byte{}, s[:]...), d[:]...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(msg)))
	pseudo = append(pseudo, 0, 0, 0, next)
	c := ^fold(sum(sum(0, pseudo), msg))
	if c == 0 {
		c = 0xffff // UDP sends an all-ones zero
	}
	return c
}

func sum(acc uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
