package cnievents

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
	pod := &Pod{Namespace: "x", Name: "a", UID: "0d5c4e9b-1f8e-4f0e-9a51-7c1b2f3d4e5f", ContainerID: "c0ffee", IP: "10.244.1.7"}
	want := []Event{
		{Verb: "ADD", OK: true, Seconds: 0.0031, Pod: pod},
		{Verb: "DEL", OK: false, Seconds: 0.5},
	}
	for _, ev := range want {
		Send(path, ev)
	}
	for _, w := range want {
		select {
		case got := <-l.Events():
			if !reflect.DeepEqual(got, w) {
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

// An event from a plugin older than the pod fields still decodes, with no
// pod; unknown fields from a newer plugin are ignored.
func TestEventWireFormat(t *testing.T) {
	var old Event
	if err := json.Unmarshal([]byte(`{"verb":"ADD","ok":true,"seconds":0.01}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Verb != "ADD" || !old.OK || old.Seconds != 0.01 || old.Pod != nil {
		t.Fatalf("old event decoded as %+v", old)
	}
	var newer Event
	js := `{"verb":"DEL","ok":true,"seconds":0.2,"pod":{"ns":"x","name":"a","cid":"c1","later":1},"later":true}`
	if err := json.Unmarshal([]byte(js), &newer); err != nil {
		t.Fatal(err)
	}
	if want := (Pod{Namespace: "x", Name: "a", ContainerID: "c1"}); newer.Pod == nil || *newer.Pod != want {
		t.Fatalf("pod decoded as %+v, want %+v", newer.Pod, want)
	}
	// What an ADD sends: the pod under "pod", its fields short-named.
	b, err := json.Marshal(Event{Verb: "ADD", OK: true, Pod: &Pod{Namespace: "x", Name: "a", ContainerID: "c1", IP: "10.244.1.7"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"verb":"ADD","ok":true,"seconds":0,"pod":{"ns":"x","name":"a","cid":"c1","ip":"10.244.1.7"}}`; string(b) != want {
		t.Fatalf("encoded %s, want %s", b, want)
	}
}

// An event too long for the agent's datagram loses its pod, not its
// count.
func TestSendDropsAnOversizedPod(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	Send(path, Event{Verb: "ADD", OK: true, Pod: &Pod{Namespace: "x", Name: strings.Repeat("a", 3*maxDatagram), ContainerID: "c1"}})
	select {
	case got := <-l.Events():
		if got.Verb != "ADD" || got.Pod != nil {
			t.Fatalf("got %+v, want the ADD without its pod", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
}
