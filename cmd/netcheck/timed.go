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
// elapses.
//
//	connected T
//	echo-stopped sent=T last-echo=T echoes=N   (the first unanswered byte)
//	held echoes=N                              (run elapsed, every echo back)
func holdCmd(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := fs.Duration("for", 30*time.Second, "how long to hold the connection")
	period := fs.Duration("every", 100*time.Millisecond, "time between two bytes")
	wait := fs.Duration("wait", 500*time.Millisecond, "how long a byte's echo may take")
	udp := fs.Bool("udp", false, "a UDP flow rather than a TCP connection")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	if fs.NArg() != 1 || *run <= 0 || *period <= 0 || *wait <= 0 {
		return errors.New("usage: netcheck hold [--udp] [--for 30s] [--every 100ms] [--wait 500ms] HOST:PORT")
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
	end := time.Now().Add(*run)
	var lastEcho time.Time
	echoes := 0
	buf := []byte{0}
	for i := 0; time.Now().Before(end); i++ {
		sent := time.Now()
		buf[0] = byte(i)
		c.SetDeadline(sent.Add(*wait))
		_, err := c.Write(buf)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		if err != nil || buf[0] != byte(i) {
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

// pollCmd checks every target (HOST:PORT/tcp|udp) every period, each
// check bounded by limit, until run elapses: a tight, bounded loop that
// can start before the targets exist (a pod's address to come).
//
//	started T
//	first-ok TARGET T   (for each target that answered, in the order given)
//	done tries=N ok=M   (checks of all targets)
func pollCmd(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := fs.Duration("for", 5*time.Second, "how long to keep checking")
	period := fs.Duration("every", 20*time.Millisecond, "time between two checks of a target")
	limit := fs.Duration("timeout", 200*time.Millisecond, "bound on each check")
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
	for next := start; next.Before(start.Add(*run)); next = next.Add(*period) {
		time.Sleep(time.Until(next))
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
