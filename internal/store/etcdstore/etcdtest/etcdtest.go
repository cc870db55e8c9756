// Package etcdtest runs a real, embedded etcd for tests: one member with a
// temporary data directory, in the test process on 127.0.0.1 (Start), or
// in a child process that a test can crash and restart to play an outage,
// on loopback (StartProc) or inside a namespace of the test's for agents
// in other namespaces (StartIn).
package etcdtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/freeport"
)

// Server is one embedded etcd member.
type Server struct {
	// Endpoint is the client URL, http://127.0.0.1:PORT (https with TLS).
	Endpoint string
	tls      *transport.TLSInfo
	dir      string
	client   url.URL
	peer     url.URL
	e        *embed.Etcd
}

// Start runs a fresh etcd and stops it when the test ends.
func Start(t testing.TB) *Server { return start(t, nil) }

// StartTLS runs a fresh etcd that serves clients over TLS with certFile
// and keyFile and accepts only clients with a certificate from caFile.
func StartTLS(t testing.TB, caFile, certFile, keyFile string) *Server {
	return start(t, &transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile, ClientCertAuth: true})
}

func start(t testing.TB, tlsInfo *transport.TLSInfo) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir(), tls: tlsInfo}
	s.client = url.URL{Scheme: "http", Host: freeAddr(t)}
	if tlsInfo != nil {
		s.client.Scheme = "https"
	}
	s.peer = url.URL{Scheme: "http", Host: freeAddr(t)}
	s.Endpoint = s.client.String()
	err := s.start()
	// A port picked free can still be taken before etcd binds it: pick
	// others and try again.
	for try := 0; err != nil && addrInUse(err) && try < 3; try++ {
		s.client.Host, s.peer.Host = freeAddr(t), freeAddr(t)
		s.Endpoint = s.client.String()
		err = s.start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "weft-test"
	cfg.Dir = s.dir
	cfg.LogLevel = "fatal" // shutdown logs "errors" that are not
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if s.tls != nil {
		cfg.ClientTLSInfo = *s.tls
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("embedded etcd not ready after 30s")
	}
	s.e = e
	return nil
}

// URL is the client endpoint.
func (s *Server) URL() string { return s.Endpoint }

// URL is the client endpoint.
func (p *Proc) URL() string { return p.Endpoint }

// Stop stops the member.
func (s *Server) Stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// addrInUse says whether etcd failed to bind its port (etcd does not
// always wrap the listen error).
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func freeAddr(t testing.TB) string {
	t.Helper()
	port, err := freeport.Pick("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// envServe asks a test binary, re-executed by StartIn, to serve etcd.
const envServe = "WEFT_ETCDTEST_SERVE"

// ServeIfAsked makes a test binary serve etcd when StartIn re-executed it:
// call it first in TestMain. Otherwise it returns at once.
func ServeIfAsked() {
	spec := os.Getenv(envServe)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintf(os.Stderr, "%s=%q: want dir,clientURL,peerURL\n", envServe, spec)
		os.Exit(2)
	}
	cu, err1 := url.Parse(parts[1])
	pu, err2 := url.Parse(parts[2])
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := &Server{dir: parts[0], client: *cu, peer: *pu}
	if err := s.start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-s.e.Err():
		fmt.Fprintln(os.Stderr, err)
	}
	s.Stop()
	os.Exit(0)
}

// Proc is etcd served by a child process, inside a network namespace for
// agents in other namespaces to reach at Endpoint, or on loopback.
type Proc struct {
	Endpoint string
	nsPath   string
	spec     string
	cmd      *exec.Cmd
}

// StartIn serves etcd from a child process (this test binary, which must
// call ServeIfAsked in TestMain) inside the namespace at nsPath, on ip:2379
// for clients; the child is stopped when the test ends.
func StartIn(t testing.TB, nsPath string, ip netip.Addr) *Proc {
	t.Helper()
	p := &Proc{nsPath: nsPath, Endpoint: fmt.Sprintf("http://%s:2379", ip)}
	p.spec = strings.Join([]string{t.TempDir(), p.Endpoint, "http://127.0.0.1:2380"}, ",")
	t.Cleanup(p.Stop)
	p.Restart(t)
	return p
}

// StartProc serves etcd from a child process on 127.0.0.1 with free ports,
// in the test's own namespace: an etcd that a test can crash (Stop) and
// bring back (Restart) in an instant.
func StartProc(t testing.TB) *Proc {
	t.Helper()
	p := &Proc{Endpoint: "http://" + freeAddr(t)}
	p.spec = strings.Join([]string{t.TempDir(), p.Endpoint, "http://" + freeAddr(t)}, ",")
	t.Cleanup(p.Stop)
	p.Restart(t)
	return p
}

// Restart starts the (stopped) child again with the same data.
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServe+"="+p.spec)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.nsPath == "" {
		err = cmd.Start()
	} else {
		err = netns.Start(p.nsPath, cmd)
	}
	if err != nil {
		t.Fatalf("start etcd %s: %v", p.Endpoint, err)
	}
	p.cmd = cmd
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("etcd child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("etcd in %s: %v", p.nsPath, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("etcd in %s not ready after 30s", p.nsPath)
	}
}

// Stop kills the child, as a crash or a power cut would (etcd's WAL makes
// that safe), and waits for it. A graceful stop takes seconds: etcd waits
// for open watch streams, which are what an outage test keeps open.
func (p *Proc) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}
