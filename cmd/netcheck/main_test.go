package main

import (
	"context"
	"net"
	"testing"
)

func startServer(t *testing.T) (tcp, udp string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a[0].String(), a[1].String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", ""
}

func TestConnectGetsItsEchoOverTCPAndUDP(t *testing.T) {
	tcp, udp := startServer(t)
	if tcp != udp {
		t.Fatalf("TCP on %s but UDP on %s: want one port", tcp, udp)
	}
	if err := run([]string{"connect", tcp}); err != nil {
		t.Errorf("tcp: %v", err)
	}
	if err := run([]string{"connect", "--udp", udp}); err != nil {
		t.Errorf("udp: %v", err)
	}
}

func TestConnectFailsWithoutAnEcho(t *testing.T) {
	// A port nobody listens on: TCP is refused, UDP's echo never comes.
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	if err := run([]string{"connect", "--udp", addr}); err == nil {
		t.Errorf("udp connect to a silent socket %s succeeded", addr)
	}
	l.Close()
	if err := run([]string{"connect", addr}); err == nil {
		t.Errorf("tcp connect to a closed port %s succeeded", addr)
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"connect"}, {"connect", "--udp"}, {"connect", "a:1", "b:2"}} {
		if err := run(args); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}
