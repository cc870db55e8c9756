package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// startServers runs serveAll on n fresh loopback ports and returns them.
func startServers(t *testing.T, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, n)
	done := make(chan error, 1)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = "127.0.0.1:0"
	}
	go func() { done <- serveAll(ctx, addrs, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveAll: %v", err)
		}
	})
	var got []string
	for range n {
		select {
		case a := <-ready:
			got = append(got, a[0].String())
		case err := <-done:
			t.Fatalf("serveAll: %v", err)
		}
	}
	return got
}

func TestProbeReportsEachTargetInOrder(t *testing.T) {
	up := startServers(t, 2)
	// A UDP socket that never answers and a TCP port nobody listens on.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed := silent.LocalAddr().String()
	args := []string{"--timeout", "300ms",
		up[0] + "/tcp", silent.LocalAddr().String() + "/udp", up[1] + "/udp", closed + "/tcp", up[1] + "/tcp", up[0] + "/udp"}
	var out bytes.Buffer
	if err := probeCmd(&out, args); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		up[0] + "/tcp ok",
		closed + "/udp fail",
		up[1] + "/udp ok",
		closed + "/tcp fail",
		up[1] + "/tcp ok",
		up[0] + "/udp ok",
	}, "\n") + "\n"
	if out.String() != want {
		t.Errorf("probe printed\n%s\nwant\n%s", out.String(), want)
	}
}

func TestProbeRefusesBadTargets(t *testing.T) {
	for _, args := range [][]string{
		nil, {"--timeout", "1s"}, {"--timeout", "0s", "127.0.0.1:1/tcp"}, {"--timeout", "soon", "127.0.0.1:1/tcp"},
		{"127.0.0.1:1"}, {"127.0.0.1:1/sctp"}, {"127.0.0.1/tcp"},
	} {
		if err := probeCmd(&bytes.Buffer{}, args); err == nil {
			t.Errorf("probe %q succeeded", args)
		}
	}
}

func TestServeTakesPorts(t *testing.T) {
	addrs, err := servePorts([]string{"80", "81"})
	if err != nil || strings.Join(addrs, " ") != ":80 :81" {
		t.Errorf("servePorts(80 81) = %q, %v", addrs, err)
	}
	for _, args := range [][]string{nil, {"0"}, {"65536"}, {"http"}, {"80", "x"}} {
		if _, err := servePorts(args); err == nil {
			t.Errorf("servePorts %q succeeded", args)
		}
	}
}

func TestServeAllStopsWhenOnePortIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	done := make(chan error, 1)
	go func() { done <- serveAll(context.Background(), []string{"127.0.0.1:0", taken.Addr().String()}, nil) }()
	if err := <-done; err == nil {
		t.Error("serveAll with a taken port returned no error")
	}
}
