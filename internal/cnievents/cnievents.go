// Package cnievents carries one small datagram per CNI verb from the
// plugin to the node agent, which turns them into metrics and, for ADD and
// DEL, tells its NetworkPolicy controller which pod got (or gave back)
// which address before the kubelet reports it. The plugin side never
// waits and never fails: with no agent listening, or a full socket buffer,
// the event is simply dropped, so a pod is never slowed down or refused
// because of it; the agent learns the same from the API server, later.
package cnievents

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Event is what the plugin reports after a verb.
type Event struct {
	Verb string `json:"verb"` // ADD, DEL, CHECK, GC, STATUS
	OK   bool   `json:"ok"`
	// Seconds is the plugin's run time up to the verb's end.
	Seconds float64 `json:"seconds"`
	// Pod is who the verb was for (ADD and DEL), from CNI_ARGS; empty
	// when the runtime passed no Kubernetes arguments, and in events
	// from plugins older than these fields.
	Pod *Pod `json:"pod,omitempty"`
}

// Pod names the attachment an ADD or DEL was for. Nothing in it is
// checked by the plugin beyond its length: the agent validates it
// against what it knows before it uses it.
type Pod struct {
	Namespace string `json:"ns"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// ContainerID is the sandbox's (CNI_CONTAINERID): a DEL forgets
	// only what the ADD of the same container said.
	ContainerID string `json:"cid"`
	// IP is the IPv4 address a successful ADD gave the pod.
	IP string `json:"ip,omitempty"`
}

// maxDatagram bounds what Listen reads. The longest event (a 253-byte
// pod name, a 63-byte namespace, a 64-byte container id) is well below
// it; Send drops pod fields that could not fit.
const maxDatagram = 2048

// Send sends ev to the unixgram socket at path without blocking. Every
// error is ignored on purpose (see the package comment).
func Send(path string, ev Event) {
	if path == "" {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	if len(b) > maxDatagram && ev.Pod != nil {
		// Longer than any valid name allows: the metrics still count.
		ev.Pod = nil
		if b, err = json.Marshal(ev); err != nil {
			return
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.Sendto(fd, b, unix.MSG_DONTWAIT, &unix.SockaddrUnix{Name: path})
}

// Listener receives the plugin's events on a unixgram socket.
type Listener struct {
	conn   *net.UnixConn
	path   string
	events chan Event
}

// Listen binds a unixgram socket at path (replacing a stale one left by an
// earlier agent, making the directory if needed, root-only) and delivers
// what arrives on Events until Close. Malformed datagrams are dropped, and
// so are events that arrive while Events is full (64 queued): a reader
// that falls behind loses counts, it never holds up a plugin.
func Listen(path string) (*Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cni events socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale cni events socket %s: %w", path, err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("cni events socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cni events socket %s: %w", path, err)
	}
	l := &Listener{conn: conn, path: path, events: make(chan Event, 64)}
	go l.run()
	return l, nil
}

// Events delivers the received events; it is closed after Close.
func (l *Listener) Events() <-chan Event { return l.events }

// Path is the socket's path, for the plugin's "eventsSocket" config key.
func (l *Listener) Path() string { return l.path }

func (l *Listener) run() {
	defer close(l.events)
	buf := make([]byte, maxDatagram)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var ev Event
		if json.Unmarshal(buf[:n], &ev) != nil || ev.Verb == "" {
			continue
		}
		select {
		case l.events <- ev:
		default:
		}
	}
}

// Close stops listening and removes the socket file.
func (l *Listener) Close() error {
	err := l.conn.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}
