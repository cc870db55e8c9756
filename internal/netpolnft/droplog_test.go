package netpolnft

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/nflog"
)

const testLogGroup = 4242

// Dropped packets reach the NFLOG group with the dropping chain's name,
// at most Rate a second per chain; a pod without verdicts is logged as
// unknown; turning logging off rewrites the chains without it, and a
// restarted applier with the same setting changes nothing.
func TestDroppedPacketsAreLoggedRateLimited(t *testing.T) {
	b := newBed(t)
	b.applier.Log = DropLog{Rate: 5, Group: testLogGroup}
	var r *nflog.Reader
	b.n1.Do(t, func() (err error) {
		r, err = nflog.Open(testLogGroup, 128)
		return err
	})
	defer r.Close()
	packets := make(chan nflog.Packet, 1000)
	go func() {
		for {
			ps, err := r.Read()
			if err != nil && err != nflog.ErrLost {
				close(packets)
				return
			}
			for _, p := range ps {
				packets <- p
			}
		}
	}()

	b.apply([]netpol.Policy{denyX}, "a", "b") // c is unknown to the agent
	st := netpol.Compile(b.input([]netpol.Policy{denyX}, "a", "b"))
	chainA := st.Ingress[ipA]
	if chainA == "" {
		t.Fatal("a is not isolated")
	}
	if out := b.nft("list", "chain", "ip", Table, chainA); !strings.Contains(out, "group 4242") || !strings.Contains(out, `prefix "`+chainA+`"`) {
		t.Fatalf("chain %s has no log rule:\n%s", chainA, out)
	}

	// 50 datagrams from b to a's port 81, as fast as they go.
	start := time.Now()
	b.pods["b"].NS.Run(t, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(ipA, 81).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range 50 {
			_, _ = c.Write([]byte("weft"))
		}
		return nil
	})
	elapsed := time.Since(start)
	// One datagram from c, which has no verdicts, to b.
	b.pods["c"].NS.Run(t, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(ipB, 82).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("weft"))
		return err
	})

	var fromB, unknown int
	deadline := time.After(5 * time.Second)
collect:
	for {
		select {
		case p, ok := <-packets:
			if !ok {
				break collect
			}
			f, ok := p.IPv4()
			if !ok {
				t.Errorf("logged packet is not IPv4: %x", p.Payload)
				continue
			}
			switch {
			case p.Prefix == chainA && f.Src == ipB && f.Dst == ipA && f.Proto == netpol.UDP && f.DstPort == 81:
				fromB++
			case p.Prefix == LogPrefixUnknown && f.Src == ipC && f.Dst == ipB && f.DstPort == 82:
				unknown++
			default:
				t.Errorf("unexpected log: prefix %q flow %+v", p.Prefix, f)
			}
			if unknown > 0 && fromB >= 5 {
				break collect
			}
		case <-deadline:
			break collect
		}
	}
	t.Logf("%d of 50 denied datagrams logged (sent in %v); pod without verdicts logged %d", fromB, elapsed, unknown)
	// The burst is Rate; at most Rate more per second of sending, and
	// one for the second that may have begun.
	if most := 5 + 5*int(elapsed/time.Second) + 6; fromB < 5 || fromB > most {
		t.Errorf("%d of 50 dropped datagrams logged in %v, want 5..%d", fromB, elapsed, most)
	}
	if unknown != 1 {
		t.Errorf("the datagram of a pod without verdicts was logged %d times, want 1", unknown)
	}

	// A restarted applier with the same setting finds nothing to do.
	again := &Applier{Log: b.applier.Log}
	b.n1.Do(t, func() error {
		res, err := again.Apply(netpol.Compile(b.input([]netpol.Policy{denyX}, "a", "b")))
		if err == nil && res.Ops != 0 {
			t.Errorf("restart with the same log setting: %d operations, want 0", res.Ops)
		}
		return err
	})
	// Off: no log rule is left anywhere.
	b.applier = &Applier{}
	b.apply([]netpol.Policy{denyX}, "a", "b")
	if out := b.nft("list", "table", "ip", Table); strings.Contains(out, " log ") {
		t.Errorf("logging off, the table still logs:\n%s", out)
	}
	b.n1.Do(t, func() error {
		drift, err := Check(st)
		if err == nil && len(drift) > 0 {
			t.Errorf("Check after turning logging off: %v", drift)
		}
		return err
	})
}
