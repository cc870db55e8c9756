package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// servePorts turns `serve`'s arguments into listen addresses.
func servePorts(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("usage: netcheck serve PORT [PORT ...]")
	}
	var addrs []string
	for _, a := range args {
		if n, err := strconv.Atoi(a); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("serve: bad port %q", a)
		}
		addrs = append(addrs, ":"+a)
	}
	return addrs, nil
}

// serveAll echoes on every address until ctx ends; the first that fails
// ends them all, since a pod that answers on only some of its ports would
// make every probe of the others read as a denial.
func serveAll(ctx context.Context, addrs []string, ready chan<- [2]net.Addr) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		go func() {
			err := serve(ctx, a, ready)
			if err != nil {
				err = fmt.Errorf("serve %s: %w", a, err)
			}
			errs <- err
			cancel()
		}()
	}
	var first error
	for range addrs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// target is one probe: HOST:PORT/tcp or HOST:PORT/udp.
type target struct {
	text, network, addr string
}

func parseTarget(s string) (target, error) {
	addr, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return target{}, fmt.Errorf("probe: bad target %q: want HOST:PORT/tcp or HOST:PORT/udp", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return target{}, fmt.Errorf("probe: bad target %q: %w", s, err)
	}
	return target{s, proto, addr}, nil
}

// parseTargets parses every HOST:PORT/tcp|udp argument.
func parseTargets(args []string) ([]target, error) {
	var targets []target
	for _, a := range args {
		tg, err := parseTarget(a)
		if err != nil {
			return nil, err
		}
		targets = append(targets, tg)
	}
	return targets, nil
}

// probeCmd tries every target at once, each bounded by the timeout, and
// writes one line per target in the order given. A failed echo is an
// answer, not an error: the caller reads the lines (one exec per source
// pod, however many destinations).
func probeCmd(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	limit := fs.Duration("timeout", time.Second, "bound on each target's dial, send and echo")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if fs.NArg() == 0 || *limit <= 0 {
		return errors.New("usage: netcheck probe [--timeout 1s] HOST:PORT/tcp|udp [HOST:PORT/tcp|udp ...]")
	}
	targets, err := parseTargets(fs.Args())
	if err != nil {
		return err
	}
	ok := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i] = connect(tg.network, tg.addr, *limit) == nil
		}()
	}
	wg.Wait()
	var b strings.Builder
	for i, tg := range targets {
		verdict := "fail"
		if ok[i] {
			verdict = "ok"
		}
		fmt.Fprintf(&b, "%s %s\n", tg.text, verdict)
	}
	_, err = io.WriteString(w, b.String())
	return err
}
