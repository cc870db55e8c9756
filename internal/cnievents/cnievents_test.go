package cnievents

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSendReachesListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	Send(path, Event{Verb: "ADD", OK: true, Seconds: 0.0031})
	Send(path, Event{Verb: "DEL", OK: false, Seconds: 0.5})
	want := []Event{{"ADD", true, 0.0031}, {"DEL", false, 0.5}}
	for _, w := range want {
		select {
		case got := <-l.Events():
			if got != w {
				t.Fatalf("got %+v, want %+v", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %+v within 5s", w)
		}
	}
}

// With nobody listening, or no socket at all, Send returns at once and
// does not fail: pods never wait for metrics.
func TestSendWithoutListenerIsHarmless(t *testing.T) {
	dir := t.TempDir()
	Send(filepath.Join(dir, "missing.sock"), Event{Verb: "ADD", OK: true})
	Send("", Event{Verb: "ADD", OK: true})
	l, err := Listen(filepath.Join(dir, "full.sock"))
	if err != nil {
		t.Fatal(err)
	}
	// Far more events than the queue and the socket buffer hold, with no
	// reader: Send must never block on a full socket.
	for i := 0; i < 5000; i++ {
		Send(l.Path(), Event{Verb: "ADD", OK: true})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range l.Events() {
	}
	if _, err := os.Stat(l.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

// A file left at the socket's path by an earlier agent is replaced, and
// the new socket is the one that receives.
func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	Send(path, Event{Verb: "GC", OK: true})
	select {
	case got := <-l.Events():
		if got.Verb != "GC" || !got.OK {
			t.Fatalf("got %+v, want the GC event", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the replacing socket received nothing within 5s")
	}
}
