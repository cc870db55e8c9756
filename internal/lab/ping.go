package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/internal/netns"
)

// PingResult counts an ICMP echo exchange.
type PingResult struct {
	Sent, Received int
	// RTTs of the replies, in the order they arrived.
	RTTs []time.Duration
}

// Lost is how many echo requests got no reply.
func (r PingResult) Lost() int { return r.Sent - r.Received }

var pingID atomic.Uint32

func init() { pingID.Store(rand.Uint32()) }

// Ping sends count ICMP echo requests, interval apart, from inside the
// named namespace to dst, and waits up to wait after the last one for the
// replies. It is a real ping: a raw ICMP socket made in the namespace,
// answered by the destination's kernel.
func Ping(ctx context.Context, nsName string, dst netip.Addr, count int, interval, wait time.Duration) (PingResult, error) {
	p, err := StartPing(ctx, nsName, dst, count, interval, wait)
	if err != nil {
		return PingResult{}, err
	}
	return p.Wait()
}

// PingRun is a Ping running in the background.
type PingRun struct {
	mu   sync.Mutex
	res  PingResult
	done chan struct{}
	err  error
	// stop ends the sending early (Stop).
	stop     chan struct{}
	stopOnce sync.Once
}

// Stop sends no more echo requests; the run ends once the replies to
// those sent are in, or wait after the last one. A test that needs a
// stream to span an event of unknown length (a restart on a loaded
// machine) starts a long one and stops it once the event is over.
func (p *PingRun) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// Received is how many replies came back so far.
func (p *PingRun) Received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res.Received
}

// Wait waits for the run to end and returns its result.
func (p *PingRun) Wait() (PingResult, error) {
	<-p.done
	return snapshot(&p.mu, &p.res), p.err
}

// StartPing starts a Ping in the background.
func StartPing(ctx context.Context, nsName string, dst netip.Addr, count int, interval, wait time.Duration) (*PingRun, error) {
	// The sequence number is 16 bits: past 65536 echoes, replies could no
	// longer be matched to their requests.
	if count <= 0 || count > 1<<16 {
		return nil, fmt.Errorf("ping count %d: want 1 to %d", count, 1<<16)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("ping interval %s: want more than 0", interval)
	}
	var conn net.PacketConn
	err := ns.WithNetNSPath(netns.Path(nsName), func(ns.NetNS) error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ping from %s: open ICMP socket: %w", nsName, err)
	}
	p := &PingRun{done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer conn.Close()
		p.err = p.run(ctx, conn, dst, count, interval, wait)
	}()
	return p, nil
}

func (p *PingRun) run(ctx context.Context, conn net.PacketConn, dst netip.Addr, count int, interval, wait time.Duration) error {
	id := uint16(pingID.Add(1))
	mu, res := &p.mu, &p.res
	sentAt := make([]time.Time, count)
	got := make([]bool, count)
	// replied is signalled on every reply, so that the end waits for the
	// replies to what was sent.
	replied := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			b := buf[:n]
			if len(b) < 8 || b[0] != 0 || b[1] != 0 || binary.BigEndian.Uint16(b[4:]) != id {
				continue
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			seq := int(binary.BigEndian.Uint16(b[6:]))
			mu.Lock()
			if seq < count && !got[seq] && !sentAt[seq].IsZero() {
				got[seq] = true
				res.Received++
				res.RTTs = append(res.RTTs, now.Sub(sentAt[seq]))
			}
			mu.Unlock()
			select {
			case replied <- struct{}{}:
			default:
			}
		}
	}()

	to := &net.IPAddr{IP: dst.AsSlice()}
	tick := time.NewTicker(interval)
	defer tick.Stop()
send:
	for seq := 0; seq < count; seq++ {
		if seq > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.stop:
				break send
			case <-tick.C:
			}
		}
		mu.Lock()
		sentAt[seq] = time.Now()
		res.Sent++
		mu.Unlock()
		// A send error (no route yet, say) is a lost packet, not a
		// failed measurement.
		conn.WriteTo(echoRequest(id, uint16(seq)), to)
	}
	deadline := time.After(wait)
	for {
		mu.Lock()
		allIn := res.Received == res.Sent
		mu.Unlock()
		if allIn {
			return nil
		}
		select {
		case <-replied:
		case <-deadline:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func snapshot(mu *sync.Mutex, r *PingResult) PingResult {
	mu.Lock()
	defer mu.Unlock()
	c := *r
	c.RTTs = append([]time.Duration(nil), r.RTTs...)
	return c
}

func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
