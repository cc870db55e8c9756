package lab

import (
	"context"
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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/lab/process"
)

// DatastoreCommand is the hidden weft-lab subcommand that runs the lab's
// embedded etcd (RunEtcd) inside the underlay namespace.
const DatastoreCommand = "lab-datastore"

// etcdDatastore is a single-member etcd, embedded in a `weft-lab
// lab-datastore` process of its own in the underlay namespace and
// listening only on the underlay bridge's address, so that every node
// reaches it over the lab's underlay and the host's namespace cannot.
type etcdDatastore struct {
	lab *Lab
}

func (e *etcdDatastore) endpoint() string {
	return "http://" + net.JoinHostPort(e.lab.DatastoreIP().String(), strconv.Itoa(datastorePort))
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
	listen := net.JoinHostPort(s.DatastoreIP().String(), strconv.Itoa(datastorePort))
	if _, err := e.lab.startDatastoreProcess("etcd", []string{s.LabBin, DatastoreCommand, "--listen", listen, "--data-dir", d.DataDir}); err != nil {
		return err
	}
	dial := DialIn(s.Underlay)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := dial(ctx, "tcp", listen)
		if err == nil {
			c.Close()
			return nil
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
}

func (e *etcdDatastore) AgentFlags(*NodeState) []string {
	return []string{"--datastore", "etcd", "--etcd-endpoints", e.endpoint()}
}

func (e *etcdDatastore) Stop() error { return e.lab.stopDatastoreProcess("etcd", 10*time.Second) }

// RunEtcd is the lab datastore process: an embedded single-member etcd
// serving clients on listen (the underlay address) and its peer port on
// loopback, until SIGTERM or SIGINT.
func RunEtcd(listen, dataDir string) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want IP:PORT: %w", listen, err)
	}
	if dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	cfg := embed.NewConfig()
	cfg.Name = "lab"
	cfg.Dir = dataDir
	cfg.LogLevel = "warn"
	// The lab's data lives in /run and dies with the lab: fsync buys
	// nothing and slows every lease renewal.
	cfg.UnsafeNoFsync = true
	client := url.URL{Scheme: "http", Host: ap.String()}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:2380"}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
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

// Client returns an etcd client whose connections are made inside the
// underlay namespace, for the lab's own reads and writes (tests that
// rewrite a record, the scale benchmark's peer records). The caller
// closes it.
func (e *etcdDatastore) Client() (*clientv3.Client, error) {
	dial := DialIn(e.lab.Underlay)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", strings.TrimPrefix(addr, "http://"))
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client in %s: %w", e.lab.Underlay, err)
	}
	return cli, nil
}
