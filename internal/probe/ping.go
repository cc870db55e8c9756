package probe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HeaderOverhead is what IPv4 and UDP add to a probe's payload: a Ping of
// size bytes is an IP packet of exactly size bytes.
const HeaderOverhead = 20 + 8

// MinPingSize is the smallest IP packet a Ping sends: the headers and an
// unpadded probe.
const MinPingSize = HeaderOverhead + packetSize

// ErrNoReply means the probe or its answer was lost: nothing came back
// within the timeout, and the kernel reported no error either.
var ErrNoReply = errors.New("no reply")

// TooBigError means the kernel refused a Don't-Fragment packet of Size
// bytes: the outgoing interface, or a router that answered with ICMP
// "fragmentation needed", carries at most MTU bytes.
type TooBigError struct{ Size, MTU int }

func (e *TooBigError) Error() string {
	return fmt.Sprintf("a %d-byte packet with DF set does not fit: the path carries at most %d bytes", e.Size, e.MTU)
}

// Ping sends one probe that makes an IP packet of size bytes, with Don't
// Fragment set (IP_PMTUDISC_DO), from src (this node's bridge address, so
// it takes the pods' path) to the responder at dst, and waits up to
// timeout for the answer, which is always small. It returns the round
// trip, ErrNoReply, a *TooBigError, or the error the kernel reported for
// the path (an ICMP "port unreachable" arrives as ECONNREFUSED, say). Each
// call is one datagram out and at most one in.
func Ping(ctx context.Context, src netip.Addr, dst netip.AddrPort, size int, timeout time.Duration) (time.Duration, error) {
	if size < MinPingSize || size > HeaderOverhead+maxDatagram {
		return 0, fmt.Errorf("probe size %d: want %d to %d bytes", size, MinPingSize, HeaderOverhead+maxDatagram)
	}
	if !src.Is4() || !dst.Addr().Is4() {
		return 0, fmt.Errorf("probe %s → %s: IPv4 addresses only", src, dst)
	}
	d := net.Dialer{
		LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				// The source need not be up yet (as for the prober), and
				// the packet must never be fragmented on the way.
				serr = errors.Join(
					unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1),
					unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO))
			})
			return errors.Join(err, serr)
		},
	}
	c, err := d.DialContext(ctx, "udp4", dst.String())
	if err != nil {
		return 0, fmt.Errorf("probe socket %s → %s: %w", src, dst, err)
	}
	conn := c.(*net.UDPConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	nonce, seq := rand.Uint64(), rand.Uint64()
	payload := size - HeaderOverhead
	req := make([]byte, payload)
	encodeSized(req, typeSizedReq, uint32(payload), nonce, seq)
	sent := time.Now()
	conn.SetDeadline(sent.Add(timeout))
	if _, err := conn.Write(req); err != nil {
		return 0, sendError(conn, size, err)
	}
	buf := make([]byte, 2*packetSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, ErrNoReply
			}
			return 0, sendError(conn, size, err)
		}
		h, err := decodeHeader(buf[:n])
		if err == nil && h.typ == typeReply && h.nonce == nonce && h.seq == seq {
			return time.Since(sent), nil
		}
	}
}

// sendError turns EMSGSIZE into a TooBigError with the path MTU the
// kernel knows for the socket's destination.
func sendError(conn *net.UDPConn, size int, err error) error {
	if !errors.Is(err, unix.EMSGSIZE) {
		return err
	}
	mtu := 0
	if rc, rerr := conn.SyscallConn(); rerr == nil {
		rc.Control(func(fd uintptr) {
			mtu, _ = unix.GetsockoptInt(int(fd), unix.SOL_IP, unix.IP_MTU)
		})
	}
	return &TooBigError{Size: size, MTU: mtu}
}

// SearchMTU narrows down the largest packet that a Ping from src gets
// through to dst with DF set, knowing that lo bytes pass and hi bytes do
// not: it bisects until the two are within step bytes and returns the
// largest size seen to pass. A size counts as failed only when tries pings
// of it all go unanswered (or are too big), so that one lost datagram does
// not shrink the answer; any other error ends the search. It sends at
// most tries*ceil(log2((hi-lo)/step)) probes.
func SearchMTU(ctx context.Context, src netip.Addr, dst netip.AddrPort, lo, hi, step int, timeout time.Duration, tries int) (int, error) {
	passes := func(size int) (bool, error) {
		for range max(tries, 1) {
			_, err := Ping(ctx, src, dst, size, timeout)
			var tb *TooBigError
			switch {
			case err == nil:
				return true, nil
			case !errors.As(err, &tb) && !errors.Is(err, ErrNoReply):
				return false, err
			}
		}
		return false, nil
	}
	step = max(step, 1)
	for hi-lo > step {
		mid := lo + (hi-lo)/2
		ok, err := passes(mid)
		if err != nil {
			return lo, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}
