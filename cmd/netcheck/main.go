// Command netcheck is the lab's test image (weft.dev/lab/netcheck:v1): a
// pod that answers, and a client that says whether a pod answered.
//
//	netcheck                          TCP and UDP echo on :8080 until SIGTERM
//	netcheck serve PORT...            TCP and UDP echo on each port until SIGTERM
//	netcheck connect HOST:PORT        exit 0 if a TCP echo comes back in 2 s
//	netcheck connect --udp HOST:PORT  the same over UDP
//	netcheck probe [--timeout 1s] HOST:PORT/tcp HOST:PORT/udp ...
//	                                  try every target at once and print
//	                                  "TARGET ok" or "TARGET fail" for each,
//	                                  in the order given; exit 0 either way
//	netcheck hold [--udp] [--for 30s] HOST:PORT
//	                                  hold a TCP connection (UDP flow) once it
//	                                  echoes, send a byte every 100 ms, print
//	                                  when the echo stops
//	netcheck poll [--for 5s] [--until-all-ok] TARGET...
//	                                  check every target every 20 ms, print
//	                                  when each first answered
//
// It is static and needs nothing from its image but itself.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// timeout bounds a whole check: dial, send and the echo's return.
const timeout = 2 * time.Second

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "netcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return serve(ctx, ":8080", nil)
	}
	switch args[0] {
	case "serve":
		addrs, err := servePorts(args[1:])
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return serveAll(ctx, addrs, nil)
	case "probe":
		return probeCmd(os.Stdout, args[1:])
	case "hold":
		return holdCmd(os.Stdout, args[1:])
	case "poll":
		return pollCmd(os.Stdout, args[1:])
	case "connect":
	default:
		return fmt.Errorf("unknown command %q: want no arguments, serve PORT [PORT ...], connect [--udp] HOST:PORT, probe TARGET [TARGET ...], hold HOST:PORT or poll TARGET [TARGET ...]", args[0])
	}
	network, rest := "tcp", args[1:]
	if len(rest) > 0 && rest[0] == "--udp" {
		network, rest = "udp", rest[1:]
	}
	if len(rest) != 1 {
		return errors.New("usage: netcheck connect [--udp] HOST:PORT")
	}
	if err := connect(network, rest[0], timeout); err != nil {
		return err
	}
	fmt.Printf("%s echo from %s ok\n", network, rest[0])
	return nil
}

// serve echoes TCP streams and UDP datagrams on addr until ctx ends;
// ready, when not nil, receives the bound TCP and UDP addresses.
func serve(ctx context.Context, addr string, ready chan<- [2]net.Addr) error {
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer tl.Close()
	// The UDP socket takes the TCP listener's port, so that ":0" gives
	// one port for both.
	_, port, _ := net.SplitHostPort(tl.Addr().String())
	host, _, _ := net.SplitHostPort(addr)
	uc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	defer uc.Close()
	if ready != nil {
		ready <- [2]net.Addr{tl.Addr(), uc.LocalAddr()}
	}
	go func() {
		<-ctx.Done()
		tl.Close()
		uc.Close()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(buf[:n], from)
		}
	}()
	for {
		c, err := tl.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			io.Copy(c, c)
		}()
	}
}

// connect sends a unique message to addr and waits for it to come back
// within limit.
func connect(network, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c, err := net.DialTimeout(network, addr, limit)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	msg := fmt.Appendf(nil, "netcheck %d %d", os.Getpid(), time.Now().UnixNano())
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send to %s: %w", addr, err)
	}
	got := make([]byte, len(msg))
	if network == "udp" {
		n, err := c.Read(got)
		if err != nil {
			return fmt.Errorf("no udp echo from %s: %w", addr, err)
		}
		got = got[:n]
	} else if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("no tcp echo from %s: %w", addr, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("%s echo from %s: got %q, sent %q", network, addr, got, msg)
	}
	return nil
}
