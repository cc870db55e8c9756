package netpolnft

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// ticker serves on port in n: to each client it writes a byte every 20 ms
// (at most 1000) and counts the bytes it receives.
func (b *bed) ticker(n *testnet.NS, port int) *atomic.Int64 {
	var l net.Listener
	n.Run(b.t, func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	b.t.Cleanup(func() { l.Close() })
	got := &atomic.Int64{}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b.t.Cleanup(func() { c.Close() })
		go func() {
			for range 1000 {
				if _, err := c.Write([]byte{'t'}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		buf := make([]byte, 64)
		for {
			k, err := c.Read(buf)
			got.Add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	return got
}

// silent reports whether c receives nothing for a whole second, reading
// what is already in flight first (at most 3 s in all).
func silent(c net.Conn) bool {
	buf := make([]byte, 64)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// A policy that denies an open connection stops it both ways, from the
// next packet on; a policy that allows it again lets it go on.
func TestPolicyChangeCutsOpenConnectionBothWays(t *testing.T) {
	b := newBed(t)
	b.apply(nil)
	received := b.ticker(b.pods["a"].NS, 9000)
	var c net.Conn
	b.pods["b"].NS.Run(t, func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(ipA, 9000).String(), time.Second)
		return err
	})
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, "the open connection carries data both ways", func() error {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return err
		}
		if received.Load() < 5 {
			return fmt.Errorf("server got %d bytes", received.Load())
		}
		return nil
	})

	// a now accepts b on port 80 only: the connection to 9000 is denied.
	if res := b.apply([]netpol.Policy{denyX, aFromB}); !res.Bumped {
		t.Fatal("a revoking change must make open connections be judged again")
	}
	if !silent(c) {
		t.Error("server → client: the denied connection still delivers")
	}
	before := received.Load()
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if silent(c); received.Load() != before {
		t.Error("client → server: the denied connection still delivers")
	}

	b.apply(nil)
	testnet.Eventually(t, 20*time.Second, "the connection resumes once allowed again", func() error {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return err
		}
		if received.Load() == before {
			return fmt.Errorf("server still at %d bytes", before)
		}
		return nil
	})
}

// An agent restart (a new Applier on the table the old one left) changes
// nothing, and breaks no open connection; a table someone edited is put
// right by the next Apply.
func TestRestartLeavesVerdictsUnchanged(t *testing.T) {
	b := newBed(t)
	pols := []netpol.Policy{denyX, aFromB, bFromBlock, cToWeb}
	want := netpol.Compile(b.input(pols))
	b.apply(pols)
	var c net.Conn
	b.pods["b"].NS.Run(t, func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(ipA, 80).String(), time.Second)
		return err
	})
	defer c.Close()
	if !echoes(c) {
		t.Fatal("b → a:80 is allowed")
	}

	b.applier = &Applier{}
	res := b.apply(pols)
	if res.Ops != 0 || res.Bumped || res.Rebuilt {
		t.Errorf("a restarted agent with the same inputs must change nothing: %+v", res)
	}
	b.checkClean(want)
	if !echoes(c) {
		t.Error("the open connection broke across the restart")
	}

	// Someone empties a set and breaks a fixed chain.
	b.nft("flush", "set", "ip", Table, "known")
	var drift []string
	b.n1.Do(t, func() (err error) {
		drift, err = Check(want)
		return err
	})
	if len(drift) == 0 || !strings.Contains(strings.Join(drift, "\n"), "known pods") {
		t.Errorf("Check must see the emptied set: %v", drift)
	}
	b.applier = &Applier{}
	if res := b.apply(pols); res.Rebuilt || res.Ops == 0 {
		t.Errorf("a missing element is repaired incrementally: %+v", res)
	}
	b.checkClean(want)

	b.nft("flush", "chain", "ip", Table, "judge")
	b.n1.Do(t, func() error {
		present, problems, err := CheckLayout()
		if err != nil || !present || len(problems) == 0 {
			t.Errorf("CheckLayout must see the broken chain: %v %v %v", present, problems, err)
		}
		return nil
	})
	b.applier = &Applier{}
	if res := b.apply(pols); !res.Rebuilt {
		t.Errorf("a broken fixed chain makes the table rebuilt: %+v", res)
	}
	b.checkClean(want)
	if !echoes(c) {
		t.Error("the allowed connection broke across the rebuild")
	}
	if connects(t, b.pods["c"].NS, netip.Addr{}, ipA, 81) {
		t.Error("after the rebuild, c → a:81 is still denied")
	}

	b.n1.Do(t, removeTable)
	if out := b.nft("list", "tables"); strings.Contains(out, Table) {
		t.Errorf("Remove left the table:\n%s", out)
	}
}
