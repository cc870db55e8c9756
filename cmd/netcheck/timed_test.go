package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHoldKeepsAnEchoingConnection(t *testing.T) {
	tcp, udp := startServer(t)
	for _, args := range [][]string{{tcp}, {"--udp", udp}} {
		var out bytes.Buffer
		if err := holdCmd(&out, append([]string{"--for", "400ms", "--every", "20ms", "--wait", "5s"}, args...)); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "connected ") || !strings.HasPrefix(lines[1], "echoing ") ||
			!strings.HasPrefix(lines[2], "held echoes=") || lines[2] == "held echoes=1" {
			t.Errorf("hold %q printed\n%s", args, out.String())
		}
	}
}

func TestHoldReportsTheFirstUnansweredDatagram(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var out bytes.Buffer
	if err := holdCmd(&out, []string{"--udp", "--for", "10s", "--wait", "100ms", "--establish", "500ms", silent.LocalAddr().String()}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[1], " echoes=0") {
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
	if len(lines) != 3 || lines[1][:8] != "echoing " || !strings.HasPrefix(lines[2], "echo-stopped ") || !strings.HasSuffix(lines[2], " echoes=3") {
		t.Errorf("hold printed\n%s", out.String())
	}
}

// A UDP flow whose first datagrams go unanswered (a path not ready yet,
// a loaded machine) is held once it echoes, not reported stopped before
// it ever worked.
func TestHoldWaitsForTheFirstEcho(t *testing.T) {
	late, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	go func() {
		buf := make([]byte, 64)
		for n := 0; ; n++ {
			k, from, err := late.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 3 { // the first three datagrams are lost
				late.WriteTo(buf[:k], from)
			}
		}
	}()
	var out bytes.Buffer
	if err := holdCmd(&out, []string{"--udp", "--for", "300ms", "--every", "20ms", "--wait", "100ms", "--establish", "10s", late.LocalAddr().String()}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "echoing ") || !strings.HasPrefix(lines[2], "held echoes=") {
		t.Errorf("hold printed\n%s", out.String())
	}
}

// With --until-all-ok, poll ends as soon as every target has answered.
func TestPollUntilAllOK(t *testing.T) {
	tcp, udp := startServer(t)
	var out bytes.Buffer
	start := time.Now()
	if err := pollCmd(&out, []string{"--for", "20s", "--until-all-ok", tcp + "/tcp", udp + "/udp"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "first-ok "+tcp+"/tcp ") || !strings.HasPrefix(lines[2], "first-ok "+udp+"/udp ") {
		t.Errorf("poll printed\n%s", out.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("poll ran %s although every target answered at once", took)
	}
}

func TestPollReportsWhichTargetsAnswered(t *testing.T) {
	tcp, udp := startServer(t)
	// A silent UDP socket: every check of it fails.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var out bytes.Buffer
	args := []string{"--for", "200ms", "--every", "20ms", "--timeout", "2s", silent.LocalAddr().String() + "/udp", tcp + "/tcp", udp + "/udp"}
	if err := pollCmd(&out, args); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "started ") ||
		!strings.HasPrefix(lines[1], "first-ok "+tcp+"/tcp ") || !strings.HasPrefix(lines[2], "first-ok "+udp+"/udp ") ||
		lines[3] != "done tries=30 ok=20" {
		t.Errorf("poll printed\n%s", out.String())
	}
	for _, bad := range [][]string{nil, {"nonsense"}, {"--for", "0s", tcp + "/tcp"}} {
		if err := pollCmd(&out, bad); err == nil {
			t.Errorf("poll %q succeeded", bad)
		}
	}
}
