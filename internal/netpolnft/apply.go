package netpolnft

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netpol"
)

// Applier keeps the table in the desired State. It remembers what it last
// applied, so that a change costs only its difference; after a failed
// batch, or when new, it reads the kernel first (a restarted agent finds
// the table its predecessor left and changes only what differs).
//
// An Applier acts in the network namespace of the thread that calls it.
type Applier struct {
	// Log says whether and how dropped packets are logged; set it before
	// the first Apply.
	Log DropLog

	mu  sync.Mutex
	cur *kstate
}

// Result says what one Apply did.
type Result struct {
	Rebuilt bool   // the table was (re)made whole
	Bumped  bool   // open connections are judged again
	Ops     int    // netlink messages in the batch (0: nothing to do)
	Gen     uint32 // the generation now in force
}

// elemChunk bounds the elements per netlink message: a message's element
// list is one attribute, whose length field has 16 bits.
const elemChunk = 400

// conn opens an nftables connection whose socket buffers hold a whole
// batch: the batch is one datagram, and a large first apply (thousands of
// set elements) is far beyond the default buffer.
func conn() (*nftables.Conn, error) {
	big := func(nc *netlink.Conn) error {
		raw, err := nc.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	c, err := nftables.New(nftables.WithSockOptions(big))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// Apply makes the table hold want, in one atomic batch. want must not be
// changed afterwards: the Applier keeps it as what the kernel holds.
func (a *Applier) Apply(want *netpol.State) (Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := conn()
	if err != nil {
		return Result{}, err
	}
	var res Result
	have := a.cur
	if have == nil {
		k, ok, err := read(c)
		if err != nil {
			return res, err
		}
		if !ok {
			// A random generation: connections stamped by a table that is
			// gone must not pass as judged by the new one.
			k = &kstate{st: emptyState(), gen: randomGen(), dirty: map[string]bool{}, logSpec: a.Log.spec()}
			res.Rebuilt = true
		}
		have = k
	}
	b := &batch{c: c, t: table(), log: a.Log}
	if res.Rebuilt {
		b.skeleton()
	} else if have.logOf(chainUnknown) != a.Log.spec() {
		b.fillUnknown(true)
	}
	bump := b.diff(have, want)
	gen := have.gen
	if bump || res.Rebuilt {
		gen = nextGen(gen)
		b.setGen(gen, !res.Rebuilt)
	}
	b.deletions(have, want)
	res.Ops, res.Bumped, res.Gen = b.ops, bump || res.Rebuilt, gen
	if b.err != nil {
		return res, fmt.Errorf("build policy batch for ip %s: %w", Table, b.err)
	}
	if b.ops == 0 {
		a.cur = have
		return res, nil
	}
	if err := c.Flush(); err != nil {
		a.cur = nil // the kernel is the truth again next time
		return res, fmt.Errorf("apply policy to nftables table ip %s (%d operations): %w", Table, b.ops, err)
	}
	a.cur = &kstate{st: want, gen: gen, dirty: map[string]bool{}, logSpec: a.Log.spec()}
	return res, nil
}

func randomGen() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])%genMax + 1
}

func nextGen(g uint32) uint32 {
	if g >= genMax {
		return 1
	}
	return g + 1
}

// batch collects one transaction.
type batch struct {
	c   *nftables.Conn
	t   *nftables.Table
	log DropLog
	ops int
	err error
}

// fillUnknown writes the rules of chain unknown (after emptying it).
func (b *batch) fillUnknown(flush bool) {
	ch := &nftables.Chain{Name: chainUnknown, Table: b.t}
	if flush {
		b.c.FlushChain(ch)
		b.ops++
	}
	for _, r := range unknownRules(b.log) {
		b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: r.exprs, UserData: []byte(r.tag)})
		b.ops++
	}
}

func (b *batch) check(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// skeleton replaces the table with the fixed layout (empty sets, all
// connections unjudged): add-delete-add makes a leftover table vanish in
// the same batch.
func (b *batch) skeleton() {
	c, t := b.c, b.t
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	for _, s := range fixedSets(t) {
		b.check(c.AddSet(s, nil))
	}
	fwd := baseChain(t)
	c.AddChain(fwd)
	chains := map[string]*nftables.Chain{chainForward: fwd}
	for _, name := range regularChains {
		chains[name] = c.AddChain(&nftables.Chain{Name: name, Table: t})
	}
	fixed := fixedRules()
	// Every chain a rule jumps to exists by now.
	for _, name := range append([]string{chainForward}, regularChains...) {
		for _, r := range fixed[name] {
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[name], Exprs: r.exprs, UserData: []byte(tagFixed + r.tag)})
		}
	}
	b.ops += 16
	b.fillUnknown(false)
}

// setGen installs generation g in the fresh and stamp chains.
func (b *batch) setGen(g uint32, flush bool) {
	fresh, stamp := genRules(g)
	for _, x := range []struct {
		name string
		r    taggedRule
	}{{chainFresh, fresh}, {chainStamp, stamp}} {
		ch := &nftables.Chain{Name: x.name, Table: b.t}
		if flush {
			b.c.FlushChain(ch)
		}
		b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: x.r.exprs, UserData: []byte(x.r.tag)})
		b.ops += 2
	}
}

func (b *batch) addElems(s *nftables.Set, elems []nftables.SetElement) {
	for i := 0; i < len(elems); i += elemChunk {
		b.check(b.c.SetAddElements(s, elems[i:min(i+elemChunk, len(elems))]))
		b.ops++
	}
}

func (b *batch) delElems(s *nftables.Set, elems []nftables.SetElement) {
	for i := 0; i < len(elems); i += elemChunk {
		b.check(b.c.SetDeleteElements(s, elems[i:min(i+elemChunk, len(elems))]))
		b.ops++
	}
}

func (b *batch) newSet(s *nftables.Set, elems []nftables.SetElement) {
	s.Table = b.t
	b.check(b.c.AddSet(s, nil))
	b.ops++
	b.addElems(s, elems)
}

func (b *batch) set(name string) *nftables.Set { return &nftables.Set{Table: b.t, Name: name} }

// deletions removes what want no longer has: chains (their vmap
// references went earlier in the batch), then the sets their rules used.
func (b *batch) deletions(have *kstate, want *netpol.State) {
	h := have.st
	for _, name := range append(sortedNames(h.Chains), have.strayChains...) {
		if _, ok := want.Chains[name]; ok {
			continue
		}
		ch := &nftables.Chain{Name: name, Table: b.t}
		b.c.FlushChain(ch)
		b.c.DelChain(ch)
		b.ops += 2
	}
	var gone []string
	for _, names := range [][]string{
		missing(h.AddrSets, want.AddrSets), missing(h.TupleSets, want.TupleSets),
		missing(h.CIDRSets, want.CIDRSets), missing(h.PortSets, want.PortSets), have.straySets,
	} {
		gone = append(gone, names...)
	}
	for _, name := range gone {
		b.c.DelSet(b.set(name))
		b.ops++
	}
}

// Forget makes the next Apply read the kernel's table first, so that it
// repairs whatever someone changed there.
func (a *Applier) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur = nil
}
