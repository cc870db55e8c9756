// Package fwtest builds the packets that tests of Weft's nftables guards
// forge: VXLAN datagrams with an inner packet of the sender's choosing.
// Tests only.
package fwtest

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/weftnet/weft/internal/names"
)

// VXLAN is the payload of a UDP datagram to port 4789 on Weft's VNI:
// an Ethernet frame to vtep carrying an IPv4/UDP packet src → dst with
// payload, as a node's VTEP would send it, or an attacker would.
func VXLAN(vtep net.HardwareAddr, src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload) // checksum 0: none, allowed over IPv4
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s, d := src.As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	out := []byte{0x08, 0, 0, 0, 0, 0, byte(names.VNI), 0} // flags: VNI valid
	out = append(out, vtep...)
	out = append(out, 0x0a, 0x66, 0, 0, 0, 1, 0x08, 0x00) // a made-up source MAC, IPv4
	out = append(out, ip...)
	return append(out, udp...)
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
