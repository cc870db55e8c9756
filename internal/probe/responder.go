package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxRepliesPerSecond bounds what a responder sends, whatever it receives:
// a cluster of a few thousand nodes probing every couple of seconds stays
// well below it, and a flood of forged probes cannot turn the agent into a
// traffic source.
const MaxRepliesPerSecond = 2000

// Responder answers probes sent to one address (the node's bridge
// gateway).
type Responder struct {
	conn *net.UDPConn
}

// Listen binds a responder to addr. The address need not exist yet
// (IP_FREEBIND): the agent may start it before the bridge holds its
// gateway, and it answers as soon as it does.
func Listen(addr netip.AddrPort) (*Responder, error) {
	c, err := listenUDP(addr)
	if err != nil {
		return nil, fmt.Errorf("probe responder on %s: %w", addr, err)
	}
	return &Responder{conn: c}, nil
}

func listenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Addr is the address the responder is bound to.
func (r *Responder) Addr() netip.AddrPort {
	return r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Run answers probes until ctx is done, then closes the socket.
func (r *Responder) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	defer r.conn.Close()
	// Room for the largest datagram, so that a path-MTU probe is read
	// whole and its size can be checked.
	buf := make([]byte, maxDatagram+1)
	window := time.Now()
	sent := 0
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("probe responder %s: read: %w", r.Addr(), err)
		}
		h, err := decodeHeader(buf[:n])
		if err != nil || (h.typ != typeReq && h.typ != typeSizedReq) {
			continue
		}
		if now := time.Now(); now.Sub(window) >= time.Second {
			window, sent = now, 0
		}
		if sent >= MaxRepliesPerSecond {
			continue
		}
		sent++
		// The reply is always packetSize bytes: a padded probe tests the
		// path one way, and its answer must not need the large size back.
		encodeSized(buf[:packetSize], typeReply, uint32(n), h.nonce, h.seq)
		// A failed reply is the prober's loss to see; the responder has
		// nobody to tell and keeps answering the others.
		r.conn.WriteToUDPAddrPort(buf[:packetSize], from)
	}
}
