package agentapi

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netpol"
)

// fixedProvider answers with what it holds, like an agent whose state does
// not change during the test.
type fixedProvider struct {
	status Status
	peers  []Peer
	err    error
}

func (p fixedProvider) Status(context.Context) (Status, error) { return p.status, p.err }
func (p fixedProvider) Peers(context.Context) ([]Peer, error)  { return p.peers, p.err }
func (p fixedProvider) Policy(_ context.Context, ns, name string) (netpol.Explanation, error) {
	return netpol.Explanation{Pod: ns + "/" + name}, p.err
}

func serve(t *testing.T, p Provider) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, dir, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind after Serve returned: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", SocketPath(dir)); err == nil {
			c.Close()
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s never answered", SocketPath(dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStatusAndPeersRoundTrip(t *testing.T) {
	started := time.Now().Add(-90 * time.Second)
	want := fixedProvider{
		status: Status{
			Node: "wto-a", Subnet: netip.MustParsePrefix("10.244.3.0/24"), Backend: "vxlan", MTU: 1450,
			Datastore: Datastore{Kind: "etcd", Healthy: true}, Peers: 2, Pods: 4, AddressesUsed: 4, AddressesFree: 249,
			Version: "v1", StartedAt: started, Degraded: []string{"peer wto-c unreachable for 1m"},
		},
		peers: []Peer{{
			Name: "wto-b", UnderlayIP: netip.MustParseAddr("192.168.7.2"), Subnet: netip.MustParsePrefix("10.244.4.0/24"),
			Path: "direct", PathReason: "same L2 segment", State: Reachable, RTTMillis: 0.25,
		}},
	}
	dir := serve(t, want)
	fi, err := os.Stat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 (root only)", fi.Mode().Perm())
	}

	c := NewClient(dir)
	ctx := context.Background()
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != "wto-a" || s.Subnet != want.status.Subnet || s.MTU != 1450 || len(s.Degraded) != 1 || !s.Datastore.Healthy {
		t.Errorf("status = %+v", s)
	}
	if s.UptimeSeconds < 90 {
		t.Errorf("uptime %ds, want at least 90s from StartedAt", s.UptimeSeconds)
	}
	ps, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "wto-b" || ps[0].UnderlayIP != want.peers[0].UnderlayIP || ps[0].State != Reachable {
		t.Errorf("peers = %+v", ps)
	}
}

func TestProviderErrorReachesClient(t *testing.T) {
	dir := serve(t, fixedProvider{err: errors.New("datastore not synced yet")})
	_, err := NewClient(dir).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "datastore not synced yet") {
		t.Fatalf("err = %v, want the provider's error", err)
	}
}

func TestSecondAgentRefusedStaleSocketReplaced(t *testing.T) {
	dir := serve(t, fixedProvider{})
	if l, err := Listen(dir); err == nil {
		l.Close()
		t.Fatal("Listen on a live socket succeeded; two agents would share it")
	}

	// A socket whose agent died (nobody listening) is replaced.
	stale := t.TempDir()
	l, err := net.Listen("unix", SocketPath(stale))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
}

func TestNoAgentSaysSo(t *testing.T) {
	_, err := NewClient(t.TempDir()).Peers(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is the Weft agent running") {
		t.Fatalf("err = %v, want an explanation that no agent is running", err)
	}
}
