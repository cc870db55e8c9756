// Package probe measures, from each agent, whether the other nodes' pods
// are reachable right now: a UDP responder every agent runs at its bridge
// address (names.ProbePort), and a prober that sends one small datagram to
// each peer's bridge address every few seconds over the pod network and
// keeps, per peer, reachable or not, since when, and the round-trip time.
// Probes travel the same routes, VXLAN device and firewall as pod traffic,
// so they fail when pods' traffic would. Ping sends one-off probes for
// `weft doctor`, padded to a chosen size and with Don't Fragment set, to
// find the path MTU between two nodes' pod networks. It owns no kernel
// state.
package probe

import (
	"encoding/binary"
	"errors"
)

// A probe and its reply are one fixed-size datagram each: the reply is
// the request with its type flipped, so the responder can never amplify.
// A path-MTU probe (typeSizedReq) is padded up to the size being tested;
// its reply is still packetSize bytes, smaller than the request.
const (
	packetSize   = 64
	typeReq      = 1
	typeReply    = 2
	typeSizedReq = 3
	// maxDatagram is the largest UDP payload IPv4 carries.
	maxDatagram = 65507
)

var magic = [8]byte{'W', 'E', 'F', 'T', 'P', 'R', 'B', '1'}

var errNotProbe = errors.New("not a Weft probe")

// packet layout: magic[0:8] type[8] reserved[9:12] size[12:16]
// nonce[16:24] seq[24:32] and zero padding. The nonce is the prober's, so
// that a late reply to an earlier prober (an agent restart) is not taken
// for a current one. size is a sized request's whole payload, which the
// responder checks arrived entire, and in a reply the size of the request
// it answers.
type header struct {
	typ        byte
	size       uint32
	nonce, seq uint64
}

func encode(b []byte, typ byte, nonce, seq uint64) {
	encodeSized(b[:packetSize], typ, packetSize, nonce, seq)
}

// encodeSized writes a header at the start of b and zeroes the rest of b.
func encodeSized(b []byte, typ byte, size uint32, nonce, seq uint64) {
	clear(b)
	copy(b[0:8], magic[:])
	b[8] = typ
	binary.BigEndian.PutUint32(b[12:16], size)
	binary.BigEndian.PutUint64(b[16:24], nonce)
	binary.BigEndian.PutUint64(b[24:32], seq)
}

func decode(b []byte) (typ byte, nonce, seq uint64, err error) {
	h, err := decodeHeader(b)
	return h.typ, h.nonce, h.seq, err
}

// decodeHeader accepts a request or reply of packetSize bytes, and a sized
// request only when it arrived whole (its length is the size it declares).
func decodeHeader(b []byte) (header, error) {
	if len(b) < packetSize || [8]byte(b[0:8]) != magic {
		return header{}, errNotProbe
	}
	h := header{typ: b[8], size: binary.BigEndian.Uint32(b[12:16]),
		nonce: binary.BigEndian.Uint64(b[16:24]), seq: binary.BigEndian.Uint64(b[24:32])}
	if h.typ == typeSizedReq {
		if int(h.size) != len(b) {
			return header{}, errNotProbe
		}
		return h, nil
	}
	if len(b) != packetSize {
		return header{}, errNotProbe
	}
	return h, nil
}
