package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

func TestHoldKeepsAnEchoingConnection(t *testing.T) {
	tcp, _ := startServer(t)
	var out bytes.Buffer
	if err := holdCmd(&out, []string{"--for", "400ms", "--every", "20ms", "--wait", "5s", tcp}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "connected ") || !strings.HasPrefix(lines[1], "held echoes=") || lines[1] == "held echoes=0" {
		t.Errorf("hold printed\n%s", out.String())
	}
}

// A server that echoes three bytes and then reads on without answering:
// what a connection looks like from its client once a policy drops it.
func TestHoldReportsTheFirstUnansweredByte(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(c, c, 3)
		io.Copy(io.Discard, c)
	}()
	var out bytes.Buffer
	if err := holdCmd(&out, []string{"--for", "10s", "--every", "10ms", "--wait", "200ms", l.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "echo-stopped ") || !strings.HasSuffix(lines[1], " echoes=3") {
		t.Errorf("hold printed\n%s", out.String())
	}
}

func TestPollChecksTheTargetItReads(t *testing.T) {
	tcp, _ := startServer(t)
	var out bytes.Buffer
	if err := pollCmd(&out, strings.NewReader(tcp+"/tcp\n"), []string{"--for", "200ms", "--every", "20ms"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || lines[0] != "ready" || !strings.HasPrefix(lines[1], "target "+tcp+"/tcp ") ||
		!strings.HasPrefix(lines[2], "first-ok ") || !strings.HasPrefix(lines[3], "done tries=10 ok=") || lines[3] == "done tries=10 ok=0" {
		t.Errorf("poll printed\n%s", out.String())
	}

	// A silent UDP socket: every check fails, none is reported.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	out.Reset()
	if err := pollCmd(&out, strings.NewReader(silent.LocalAddr().String()+"/udp"), []string{"--for", "100ms", "--timeout", "50ms"}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "first-ok") || !strings.Contains(s, " ok=0\n") {
		t.Errorf("poll of a silent socket printed\n%s", s)
	}
	if err := pollCmd(&out, strings.NewReader("nonsense\n"), nil); err == nil {
		t.Error("poll of a bad target succeeded")
	}
}
