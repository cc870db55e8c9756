// Package etcdstore is Weft's datastore outside Kubernetes: node records and
// subnet leases kept in etcd. It owns the keys under its prefix (by default
// /weft/) and nothing else in etcd.
//
// Layout (keys.go: SubnetKey, NodeKey):
//
//	<prefix>subnets/10.244.3.0-24  → node name   (attached to the node's etcd lease)
//	<prefix>nodes/<node>           → cluster.Node as JSON (same etcd lease)
//
// A subnet is claimed with a transaction that succeeds only when its key does
// not exist, so two nodes can never hold one subnet. Both keys hang off one
// etcd lease per node: when a node stops renewing, etcd removes its subnet
// and its record together, and every peer's watch sees it leave.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// DefaultTTL is how long a node keeps its subnet and its record without
// renewing them. It is long on purpose, as flannel's: an agent that is
// down (a crash loop, a slow image pull, a node rebooting) must not make
// its peers drop the routes to its running pods. A node that leaves for
// good gives its subnet back at once with `weft agent --cleanup`.
const DefaultTTL = 24 * time.Hour

// Config configures the etcd datastore.
type Config struct {
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS (CA alone: server-verified
	// TLS; with cert and key: mutual TLS).
	CAFile, CertFile, KeyFile string
	// Prefix is the key prefix of everything Weft stores (default
	// DefaultPrefix).
	Prefix string
	// ClusterCIDR is where subnets are leased from; SubnetLen their size.
	ClusterCIDR netip.Prefix
	SubnetLen   int
	// TTL is how long a lease lives without renewal (at least 5 s).
	TTL time.Duration
	// OpTimeout bounds every single etcd call (default 5 s), so that a
	// datastore that is down makes calls fail instead of hang.
	OpTimeout time.Duration
	Logger    *slog.Logger
}

// Store is the etcd implementation of store.Store.
type Store struct {
	cli  *clientv3.Client
	opts Config
	log  *slog.Logger

	mu      sync.Mutex
	leases  map[string]clientv3.LeaseID // node → etcd lease holding its keys
	subnets map[string]netip.Prefix     // node → subnet it holds
	records map[string]cluster.Node     // node → last published record
	lastErr error
	// lastContact is when a call last got an answer from etcd.
	lastContact time.Time
}

var _ store.Store = (*Store)(nil)

// Open validates opts and creates the client. It does not wait for etcd to
// answer, and so takes no context: an agent must start (and keep its
// datapath) while etcd is down. kubestore.Open has the same shape.
func Open(opts Config) (*Store, error) {
	if err := validate(&opts); err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != "" {
		if (opts.CertFile == "") != (opts.KeyFile == "") {
			return nil, fmt.Errorf("etcd TLS: give both a client certificate and its key, or neither")
		}
		info := transport.TLSInfo{CertFile: opts.CertFile, KeyFile: opts.KeyFile, TrustedCAFile: opts.CAFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		tlsCfg = c
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.OpTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		// gRPC's default reconnect backoff grows to two minutes: after a
		// long etcd outage the agents would stay away that long after
		// etcd is back. One connection attempt a second per agent is
		// cheap, and they follow etcd's return within a second.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 3 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	return &Store{
		cli:     cli,
		opts:    opts,
		log:     opts.Logger,
		leases:  map[string]clientv3.LeaseID{},
		subnets: map[string]netip.Prefix{},
		records: map[string]cluster.Node{},
	}, nil
}

func validate(o *Config) error {
	if len(o.Endpoints) == 0 {
		return errors.New("etcd: no endpoints given")
	}
	if !o.ClusterCIDR.IsValid() || !o.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("cluster CIDR %q: an IPv4 prefix is required", o.ClusterCIDR)
	}
	o.ClusterCIDR = o.ClusterCIDR.Masked()
	if o.SubnetLen <= o.ClusterCIDR.Bits() || o.SubnetLen > 30 {
		return fmt.Errorf("subnet length /%d must be longer than the cluster CIDR %s and at most /30", o.SubnetLen, o.ClusterCIDR)
	}
	if o.SubnetLen-o.ClusterCIDR.Bits() > 24 {
		return fmt.Errorf("subnet length /%d splits %s into more than 2^24 subnets", o.SubnetLen, o.ClusterCIDR)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < 5*time.Second {
		return fmt.Errorf("lease TTL %s is too short (minimum 5s)", o.TTL)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// note records the outcome of a datastore call for Err and LastContact.
func (s *Store) note(err error) error {
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		s.lastContact = time.Now()
	}
	s.mu.Unlock()
	return err
}

// LastContact is when a call last got an answer from etcd; zero before
// the first.
func (s *Store) LastContact() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastContact
}

// Err is the last datastore error, nil when the last call worked.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Close closes the client. Leases are left to run out (or be renewed by
// the next agent): closing is not leaving the cluster.
func (s *Store) Close() error { return s.cli.Close() }

func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.OpTimeout)
}

func validNodeName(n string) error {
	if n == "" || strings.ContainsAny(n, "/ \t\n") || len(n) > 253 {
		return fmt.Errorf("invalid node name %q", n)
	}
	return nil
}
