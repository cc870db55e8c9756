// Package nflog receives the packets that nftables log rules hand to an
// NFLOG group (nfnetlink_log), with the rule's prefix: how the agent
// learns which verdict chain dropped which packet. It speaks the netlink
// protocol directly (a handful of messages), in the network namespace of
// the thread that opens it.
package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nfnetlink_log protocol (linux/netfilter/nfnetlink_log.h), which
// golang.org/x/sys does not define.
const (
	subsysULOG = 4 // NFNL_SUBSYS_ULOG

	msgPacket = 0 // NFULNL_MSG_PACKET
	msgConfig = 1 // NFULNL_MSG_CONFIG

	attrPayload = 9  // NFULA_PAYLOAD
	attrPrefix  = 10 // NFULA_PREFIX
	attrInDev   = 4  // NFULA_IFINDEX_INDEV
	attrOutDev  = 5  // NFULA_IFINDEX_OUTDEV

	cfgCmd  = 1 // NFULA_CFG_CMD
	cfgMode = 2 // NFULA_CFG_MODE

	cmdBind = 1 // NFULNL_CFG_CMD_BIND

	copyPacket = 2 // NFULNL_COPY_PACKET
)

// Packet is one logged packet.
type Packet struct {
	Prefix        string
	Payload       []byte // from the network header, at most the copy range
	InDev, OutDev uint32 // interface indexes, 0 when unknown
}

// Reader is bound to one NFLOG group.
type Reader struct {
	c     *netlink.Conn
	group uint16
}

// Open binds group, asking for the first copyRange bytes of each packet.
// Only one socket per network namespace may bind a group: a second one
// gets an error (EBUSY).
func Open(group uint16, copyRange uint32) (*Reader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nflog: netlink netfilter socket: %w", err)
	}
	r := &Reader{c: c, group: group}
	cmd, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: cfgCmd, Data: []byte{cmdBind}}})
	mode := make([]byte, 6) // struct nfulnl_msg_config_mode: be32 range, u8 mode, pad
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = copyPacket
	modeAttr, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: cfgMode, Data: mode}})
	for _, attrs := range [][]byte{cmd, modeAttr} {
		if err := r.config(attrs); err != nil {
			c.Close()
			return nil, fmt.Errorf("nflog: bind group %d: %w", group, err)
		}
	}
	return r, nil
}

// config sends one configuration message for the group and waits for
// the kernel's answer.
func (r *Reader) config(attrs []byte) error {
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], r.group)
	_, err := r.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysULOG<<8 | msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, attrs...),
	})
	return err
}

// Read waits for the next batch of logged packets. It returns an error
// once the Reader is closed. A socket buffer that overflowed (the kernel
// logged faster than the agent read) loses packets: Read reports that as
// ErrLost and goes on.
func (r *Reader) Read() ([]Packet, error) {
	msgs, err := r.c.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, ErrLost
		}
		return nil, err
	}
	var out []Packet
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(subsysULOG<<8|msgPacket) || len(m.Data) < 4 {
			continue
		}
		p, err := parse(m.Data[4:])
		if err != nil {
			continue // not ours to judge: a malformed message is skipped
		}
		out = append(out, p)
	}
	return out, nil
}

// ErrLost says that logged packets were lost before they were read.
var ErrLost = errors.New("nflog: packets lost (socket buffer overflow)")

func parse(b []byte) (Packet, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Packet{}, err
	}
	ad.ByteOrder = binary.BigEndian
	var p Packet
	for ad.Next() {
		switch ad.Type() {
		case attrPrefix:
			s := ad.Bytes()
			for len(s) > 0 && s[len(s)-1] == 0 {
				s = s[:len(s)-1]
			}
			p.Prefix = string(s)
		case attrPayload:
			p.Payload = append([]byte(nil), ad.Bytes()...)
		case attrInDev:
			p.InDev = ad.Uint32()
		case attrOutDev:
			p.OutDev = ad.Uint32()
		}
	}
	return p, ad.Err()
}

// Close closes the socket, which unbinds the group; a blocked Read
// returns.
func (r *Reader) Close() error { return r.c.Close() }

// Flow is what a log line says of an IPv4 packet.
type Flow struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16 // TCP, UDP and SCTP only, first fragment only
}

// IPv4 reads the packet's addresses, protocol and ports; ok is false for
// anything that is not a whole IPv4 header.
func (p Packet) IPv4() (f Flow, ok bool) {
	b := p.Payload
	if len(b) < 20 || b[0]>>4 != 4 {
		return Flow{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return Flow{}, false
	}
	f.Src, f.Dst, f.Proto = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[9]
	fragOffset := binary.BigEndian.Uint16(b[6:8]) & 0x1fff
	switch f.Proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP:
		if fragOffset == 0 && len(b) >= ihl+4 {
			f.SrcPort = binary.BigEndian.Uint16(b[ihl:])
			f.DstPort = binary.BigEndian.Uint16(b[ihl+2:])
		}
	}
	return f, true
}
