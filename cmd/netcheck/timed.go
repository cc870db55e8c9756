package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Both modes below print Unix nanosecond timestamps: a pod shares its
// node's clock, so that a test can compare them with when it changed the
// cluster.

// holdCmd keeps one TCP connection (or, with --udp, one UDP flow) to
// addr and sends a byte on it every period; it reports the first byte
// whose echo did not come back within wait, or that none failed once run
// elapses. It holds only a flow that echoes: the first echo may take up
// to establish (a UDP flow resends its first byte every wait meanwhile),
// so that a test acts on the flow only once it is known to work, however
// loaded the machine is.
//
//	connected T
//	echoing T                                  (the first echo came back)
//	echo-stopped sent=T last-echo=T echoes=N   (the first unanswered byte)
//	held echoes=N                              (run elapsed, every echo back)
func holdCmd(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := fs.Duration("for", 30*time.Second, "how long to hold the connection")
	period := fs.Duration("every", 100*time.Millisecond, "time between two bytes")
	wait := fs.Duration("wait", 500*time.Millisecond, "how long a byte's echo may take")
	establish := fs.Duration("establish", 30*time.Second, "how long the first echo may take")
	udp := fs.Bool("udp", false, "a UDP flow rather than a TCP connection")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	if fs.NArg() != 1 || *run <= 0 || *period <= 0 || *wait <= 0 || *establish <= 0 {
		return errors.New("usage: netcheck hold [--udp] [--for 30s] [--every 100ms] [--wait 500ms] [--establish 30s] HOST:PORT")
	}
	network := "tcp"
	if *udp {
		network = "udp"
	}
	c, err := net.DialTimeout(network, fs.Arg(0), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(w, "connected %d\n", time.Now().UnixNano())
	var lastEcho time.Time
	if first, ok := firstEcho(c, *udp, *wait, *establish); !ok {
		fmt.Fprintf(w, "echo-stopped sent=%d last-echo=%d echoes=0\n", first.UnixNano(), lastEcho.UnixNano())
		return nil
	}
	lastEcho = time.Now()
	fmt.Fprintf(w, "echoing %d\n", lastEcho.UnixNano())
	end := time.Now().Add(*run)
	echoes := 1
	for i := 1; time.Now().Before(end); i++ {
		sent := time.Now()
		c.SetDeadline(sent.Add(*wait))
		if _, err := c.Write([]byte{byte(i)}); err != nil || !echoed(c, byte(i), sent.Add(*wait), *udp) {
			fmt.Fprintf(w, "echo-stopped sent=%d last-echo=%d echoes=%d\n", sent.UnixNano(), lastEcho.UnixNano(), echoes)
			return nil
		}
		lastEcho = time.Now()
		echoes++
		time.Sleep(time.Until(sent.Add(*period)))
	}
	fmt.Fprintf(w, "held echoes=%d\n", echoes)
	return nil
}

// firstEcho sends byte 0 and waits up to within for its echo: once on
// TCP (which retransmits by itself), every wait on UDP. It returns when
// the first byte was sent, and whether an echo came.
func firstEcho(c net.Conn, udp bool, wait, within time.Duration) (first time.Time, ok bool) {
	first = time.Now()
	deadline := first.Add(within)
	for time.Now().Before(deadline) {
		until := deadline
		if next := time.Now().Add(wait); udp && next.Before(deadline) {
			until = next
		}
		c.SetDeadline(until)
		if _, err := c.Write([]byte{0}); err != nil {
			return first, false
		}
		if echoed(c, 0, until, udp) {
			return first, true
		}
		if !udp {
			return first, false
		}
	}
	return first, false
}

// echoed reads until the echo of want comes back, or until. A UDP flow
// may deliver late echoes of earlier bytes first (a resent first byte):
// those are skipped. On TCP, echoes come in order: any other byte means
// the stream is broken.
func echoed(c net.Conn, want byte, until time.Time, udp bool) bool {
	c.SetDeadline(until)
	buf := []byte{0}
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return false
		}
		if buf[0] == want {
			return true
		}
		if !udp {
			return false
		}
	}
}

// pollCmd checks every target (HOST:PORT/tcp|udp) every period, each
// check bounded by limit, until run elapses: a tight, bounded loop that
// can start before the targets exist (a pod's address to come).
//
//	started T
//	first-ok TARGET T   (for each target that answered, in the order given)
//	done tries=N ok=M   (checks of all targets)
//
// With --until-all-ok it stops once every target has answered: a test
// that needs each target's first answer waits as long as load makes it
// take, and no longer.
func pollCmd(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := fs.Duration("for", 5*time.Second, "how long to keep checking")
	period := fs.Duration("every", 20*time.Millisecond, "time between two checks of a target")
	limit := fs.Duration("timeout", 200*time.Millisecond, "bound on each check")
	untilAllOK := fs.Bool("until-all-ok", false, "stop once every target has answered (at the latest when --for elapses)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if fs.NArg() == 0 || *run <= 0 || *period <= 0 || *limit <= 0 {
		return errors.New("usage: netcheck poll [--for 5s] [--every 20ms] [--timeout 200ms] TARGET [TARGET ...]")
	}
	targets, err := parseTargets(fs.Args())
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(w, "started %d\n", start.UnixNano())
	var (
		tries, oks atomic.Int64
		first      = make([]atomic.Int64, len(targets))
		wg         sync.WaitGroup
	)
	allOK := func() bool {
		for i := range first {
			if first[i].Load() == 0 {
				return false
			}
		}
		return true
	}
	for next := start; next.Before(start.Add(*run)); next = next.Add(*period) {
		time.Sleep(time.Until(next))
		if *untilAllOK && allOK() {
			break
		}
		for i, tg := range targets {
			wg.Add(1)
			tries.Add(1)
			go func() {
				defer wg.Done()
				if connect(tg.network, tg.addr, *limit) == nil {
					oks.Add(1)
					first[i].CompareAndSwap(0, time.Now().UnixNano())
				}
			}()
		}
	}
	wg.Wait()
	for i, tg := range targets {
		if f := first[i].Load(); f != 0 {
			fmt.Fprintf(w, "first-ok %s %d\n", tg.text, f)
		}
	}
	fmt.Fprintf(w, "done tries=%d ok=%d\n", tries.Load(), oks.Load())
	return nil
}
