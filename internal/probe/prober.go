package probe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// State is the reachability of a peer.
type State string

const (
	Unknown     State = "unknown"
	Reachable   State = "reachable"
	Unreachable State = "unreachable"
)

// Config of a prober. Zero fields take the defaults.
type Config struct {
	// Source is this node's bridge address: probes leave from the pod
	// network so that they take the pods' path, not the underlay's.
	Source netip.Addr
	// Interval between two probes to one peer (default 2s, at least 10ms).
	Interval time.Duration
	// Timeout after which an unanswered probe counts as lost (default and
	// at most Interval).
	Timeout time.Duration
	// DownAfter is how long a peer must stay unreachable before it is
	// reported as down (default 30s).
	DownAfter time.Duration
}

func (c *Config) defaults() {
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
	}
	c.Interval = max(c.Interval, 10*time.Millisecond)
	if c.Timeout == 0 || c.Timeout > c.Interval {
		c.Timeout = c.Interval
	}
	if c.DownAfter == 0 {
		c.DownAfter = 30 * time.Second
	}
}

// Result is what the prober knows about one peer.
type Result struct {
	Name string
	// Addr is the peer's responder: its bridge address and probe port.
	Addr netip.AddrPort
	State
	// Since is when State began (for Unknown: when the peer was added).
	Since time.Time
	// Down is set when the peer has been Unreachable for DownAfter or more.
	Down bool
	// RTT is the last answered probe's round trip.
	RTT time.Duration
	// LastReply is when the last answer arrived.
	LastReply time.Time
	// LastError says why the last probe failed.
	LastError string
	Sent      uint64
	Received  uint64
}

type peer struct {
	Result
	outstanding map[uint64]time.Time // seq → sent
}

// Prober probes a set of peers over the pod network.
type Prober struct {
	cfg   Config
	conn  *net.UDPConn
	nonce uint64

	mu    sync.Mutex
	seq   uint64
	peers map[string]*peer
	bySeq map[uint64]string
}

// NewProber opens the prober's socket at cfg.Source. Like the responder,
// the source address need not exist yet.
func NewProber(cfg Config) (*Prober, error) {
	cfg.defaults()
	if !cfg.Source.Is4() {
		return nil, fmt.Errorf("probe source %v: want an IPv4 bridge address", cfg.Source)
	}
	c, err := listenUDP(netip.AddrPortFrom(cfg.Source, 0))
	if err != nil {
		return nil, fmt.Errorf("prober socket at %s: %w", cfg.Source, err)
	}
	return &Prober{cfg: cfg, conn: c, nonce: rand.Uint64(), peers: map[string]*peer{}, bySeq: map[uint64]string{}}, nil
}

// SetPeers replaces the set of peers to probe: name → the peer's
// responder, at its bridge address (its subnet's first address) and probe
// port. A peer whose address changed starts over as Unknown.
func (p *Prober) SetPeers(want map[string]netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for name, pr := range p.peers {
		if addr, ok := want[name]; !ok || addr != pr.Addr {
			p.forget(name, pr)
		}
	}
	for name, addr := range want {
		if _, ok := p.peers[name]; !ok {
			p.peers[name] = &peer{
				Result:      Result{Name: name, Addr: addr, State: Unknown, Since: now},
				outstanding: map[uint64]time.Time{},
			}
		}
	}
}

func (p *Prober) forget(name string, pr *peer) {
	for seq := range pr.outstanding {
		delete(p.bySeq, seq)
	}
	delete(p.peers, name)
}

// Results returns every peer's result, sorted by name.
func (p *Prober) Results() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	out := make([]Result, 0, len(p.peers))
	for _, pr := range p.peers {
		r := pr.Result
		r.Down = r.State == Unreachable && now.Sub(r.Since) >= p.cfg.DownAfter
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Down counts the peers unreachable for longer than DownAfter.
func (p *Prober) Down() int {
	n := 0
	for _, r := range p.Results() {
		if r.Down {
			n++
		}
	}
	return n
}

// Run probes every peer each Interval until ctx is done, then closes the
// socket. Traffic is bounded: one packetSize datagram per peer per
// Interval, and one answer per probe.
func (p *Prober) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.conn.Close() })
	defer stop()
	readErr := make(chan error, 1)
	go func() { readErr <- p.readReplies(ctx) }()

	send := time.NewTicker(p.cfg.Interval)
	defer send.Stop()
	// Losses are noticed within a quarter of Timeout of happening.
	sweep := time.NewTicker(max(p.cfg.Timeout/4, time.Millisecond))
	defer sweep.Stop()
	p.probeAll()
	for {
		select {
		case <-ctx.Done():
			p.conn.Close()
			<-readErr
			return nil
		case err := <-readErr:
			return err
		case <-send.C:
			p.probeAll()
		case <-sweep.C:
			p.expire(time.Now())
		}
	}
}

func (p *Prober) probeAll() {
	type target struct {
		name string
		addr netip.AddrPort
		seq  uint64
	}
	p.mu.Lock()
	now := time.Now()
	targets := make([]target, 0, len(p.peers))
	for name, pr := range p.peers {
		p.seq++
		pr.outstanding[p.seq] = now
		pr.Sent++
		p.bySeq[p.seq] = name
		targets = append(targets, target{name, pr.Addr, p.seq})
	}
	p.mu.Unlock()

	buf := make([]byte, packetSize)
	for _, t := range targets {
		encode(buf, typeReq, p.nonce, t.seq)
		if _, err := p.conn.WriteToUDPAddrPort(buf, t.addr); err != nil {
			// The kernel refused at once (no route, for example): that
			// is an answer, the peer is unreachable now.
			p.mu.Lock()
			if pr, ok := p.peers[t.name]; ok && pr.Addr == t.addr {
				delete(pr.outstanding, t.seq)
				delete(p.bySeq, t.seq)
				p.lost(pr, time.Now(), fmt.Sprintf("send to %s: %v", t.addr, err))
			}
			p.mu.Unlock()
		}
	}
}

func (p *Prober) readReplies(ctx context.Context) error {
	buf := make([]byte, 2*packetSize)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("prober %s: read: %w", p.cfg.Source, err)
		}
		now := time.Now()
		typ, nonce, seq, err := decode(buf[:n])
		if err != nil || typ != typeReply || nonce != p.nonce {
			continue
		}
		p.mu.Lock()
		name, ok := p.bySeq[seq]
		if pr := p.peers[name]; ok && pr != nil && netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) == pr.Addr {
			sent := pr.outstanding[seq]
			delete(pr.outstanding, seq)
			delete(p.bySeq, seq)
			pr.Received++
			pr.RTT = now.Sub(sent)
			pr.LastReply = now
			pr.LastError = ""
			if pr.State != Reachable {
				pr.State, pr.Since = Reachable, now
			}
		}
		p.mu.Unlock()
	}
}

func (p *Prober) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.peers {
		for seq, sent := range pr.outstanding {
			if now.Sub(sent) < p.cfg.Timeout {
				continue
			}
			delete(pr.outstanding, seq)
			delete(p.bySeq, seq)
			p.lost(pr, now, fmt.Sprintf("no reply from %s within %v", pr.Addr, p.cfg.Timeout))
		}
	}
}

// lost records a lost probe. One loss makes the peer Unreachable; Since
// keeps the first loss so that Down measures the whole outage.
func (p *Prober) lost(pr *peer, now time.Time, why string) {
	pr.LastError = why
	if pr.State == Reachable || pr.State == Unknown {
		pr.State, pr.Since = Unreachable, now
	}
}
