package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdpki"
)

// DatastoreCommand is the hidden weft-lab subcommand that runs the lab's
// embedded etcd (RunEtcd) inside the underlay namespace.
const DatastoreCommand = "lab-datastore"

// etcdDatastore is a single-member etcd, embedded in a `weft-lab
// lab-datastore` process of its own in the underlay namespace and
// listening only on the underlay bridge's address, so that every node
// reaches it over the lab's underlay and the host's namespace cannot. It
// runs as production should: TLS with a client certificate per node
// (CN = node name) and auth on, each node's role made by the same code as
// `weft etcd-grant`; the lab's own tools act as root. The certificates
// live in the lab's directory (etcd-pki/).
type etcdDatastore struct {
	lab *Lab
}

func (e *etcdDatastore) endpoint() string {
	return "https://" + net.JoinHostPort(e.lab.DatastoreIP().String(), strconv.Itoa(datastorePort))
}

func (e *etcdDatastore) pkiDir() string { return filepath.Join(e.lab.State.Dir, "etcd-pki") }

// pki opens the lab's etcd CA, making it and the server's and root's
// certificates the first time.
func (e *etcdDatastore) pki() (*etcdpki.CA, error) {
	ca, err := etcdpki.Open(e.pkiDir())
	if err != nil {
		return nil, err
	}
	if _, err := ca.Server(e.lab.DatastoreIP().AsSlice()); err != nil {
		return nil, err
	}
	if _, err := ca.Client(etcdstore.RootUser); err != nil {
		return nil, err
	}
	return ca, nil
}

func (e *etcdDatastore) Start(ctx context.Context) error {
	s := e.lab.State
	d := &s.Datastore
	d.Kind = "etcd"
	d.Endpoint = e.endpoint()
	d.DataDir = filepath.Join(s.Dir, "etcd")
	d.Log = filepath.Join(s.Dir, "etcd.log")
	if process.Alive(d.PID) {
		return fmt.Errorf("datastore already runs (pid %d)", d.PID)
	}
	if _, err := e.pki(); err != nil {
		return err
	}
	listen := net.JoinHostPort(s.DatastoreIP().String(), strconv.Itoa(datastorePort))
	if _, err := e.lab.startDatastoreProcess("etcd", []string{s.LabBin, DatastoreCommand, "--listen", listen, "--data-dir", d.DataDir, "--pki-dir", e.pkiDir()}); err != nil {
		return err
	}
	dial := DialIn(s.Underlay)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := dial(ctx, "tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if !process.Alive(d.PID) {
			return fmt.Errorf("etcd exited: %s", process.LogTail(d.Log))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd does not serve on %s after 30s: %w; %s", listen, err, process.LogTail(d.Log))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return e.asRoot(ctx, func(ctx context.Context, cli *clientv3.Client) error { return etcdstore.EnableAuth(ctx, cli) })
}

// asRoot runs fn with a client acting as etcd's root, for at most 30 s.
func (e *etcdDatastore) asRoot(ctx context.Context, fn func(context.Context, *clientv3.Client) error) error {
	cli, err := e.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(ctx, cli)
}

// ProvisionNode gives node n what an operator gives a machine before its
// agent first starts: its client certificate and its etcd role.
func (e *etcdDatastore) ProvisionNode(ctx context.Context, n *NodeState) error {
	ca, err := e.pki()
	if err != nil {
		return err
	}
	if _, err := ca.Client(n.Name); err != nil {
		return err
	}
	return e.asRoot(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		return etcdstore.GrantNode(ctx, cli, etcdstore.DefaultPrefix, n.Name)
	})
}

// Forget revokes a node that left: its etcd user and role, its keys and
// its certificate.
func (e *etcdDatastore) Forget(ctx context.Context, node string) error {
	ca, err := e.pki()
	if err != nil {
		return err
	}
	err = e.asRoot(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		return etcdstore.RevokeNode(ctx, cli, etcdstore.DefaultPrefix, node)
	})
	return errors.Join(err, ca.Remove(node))
}

// NodeCredentials are the certificate and key node's agent uses for etcd.
func (e *etcdDatastore) NodeCredentials(node string) (etcdpki.Files, error) {
	ca, err := e.pki()
	if err != nil {
		return etcdpki.Files{}, err
	}
	return ca.Client(node)
}

func (e *etcdDatastore) AgentFlags(n *NodeState) []string {
	ca := filepath.Join(e.pkiDir(), "ca.pem")
	cert := filepath.Join(e.pkiDir(), n.Name+".pem")
	key := filepath.Join(e.pkiDir(), n.Name+"-key.pem")
	return []string{"--datastore", "etcd", "--etcd-endpoints", e.endpoint(), "--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key}
}

func (e *etcdDatastore) Stop() error { return e.lab.stopDatastoreProcess("etcd", 10*time.Second) }

// RunEtcd is the lab datastore process: an embedded single-member etcd
// serving clients over TLS on listen (the underlay address), requiring a
// client certificate from the CA in pkiDir, and its peer port on
// loopback, until SIGTERM or SIGINT.
func RunEtcd(listen, dataDir, pkiDir string) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want IP:PORT: %w", listen, err)
	}
	if dataDir == "" || pkiDir == "" {
		return fmt.Errorf("--data-dir and --pki-dir are required")
	}
	cfg := embed.NewConfig()
	cfg.Name = "lab"
	cfg.Dir = dataDir
	cfg.LogLevel = "warn"
	// The lab's data lives in /run and dies with the lab: fsync buys
	// nothing and slows every lease renewal.
	cfg.UnsafeNoFsync = true
	client := url.URL{Scheme: "https", Host: ap.String()}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:2380"}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	// HTTP (health, metrics) on a port of its own, on loopback: sharing
	// the TLS client port, etcd would serve gRPC through Go's HTTP/2
	// server, a slower path than gRPC's own (etcd warns about it).
	cfg.ListenClientHttpUrls = []url.URL{{Scheme: "https", Host: "127.0.0.1:2381"}}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       filepath.Join(pkiDir, "server.pem"),
		KeyFile:        filepath.Join(pkiDir, "server-key.pem"),
		TrustedCAFile:  filepath.Join(pkiDir, "ca.pem"),
		ClientCertAuth: true,
	}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer srv.Close()
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd not ready after 60s")
	}
	fmt.Fprintf(os.Stderr, "lab datastore: etcd serves %s\n", client.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "lab datastore: %s, stopping\n", s)
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}

// Client returns a client of the lab's etcd acting as root, whose
// connections are made inside the underlay namespace, for the lab's own
// reads and writes (tests that rewrite a record, the scale benchmark's
// peer records). The caller closes it.
func (e *etcdDatastore) Client() (*clientv3.Client, error) {
	return e.clientIn(e.lab.Underlay, etcdstore.RootUser)
}

// clientIn returns a client acting with the certificate issued as name,
// connecting from inside namespace nsName.
func (e *etcdDatastore) clientIn(nsName, name string) (*clientv3.Client, error) {
	ca, err := e.pki()
	if err != nil {
		return nil, err
	}
	f, err := ca.Client(name)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := (&transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS as %s: %w", name, err)
	}
	dial := DialIn(nsName)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.endpoint()},
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", hostPort(addr))
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client in %s: %w", nsName, err)
	}
	return cli, nil
}

// hostPort is the address a gRPC dialer is given, without its scheme.
func hostPort(addr string) string {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		return u.Host
	}
	return strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
}
