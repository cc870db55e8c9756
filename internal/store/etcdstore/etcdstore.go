// Package etcdstore is Weft's datastore outside Kubernetes: node records and
// subnet leases kept in etcd. It owns the keys under its prefix (by default
// /weft/) and nothing else in etcd.
//
// Layout:
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

// Options configure the etcd datastore.
type Options struct {
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS (CA alone: server-verified
	// TLS; with cert and key: mutual TLS).
	CAFile, CertFile, KeyFile string
	// Prefix is the key prefix of everything Weft stores (default "/weft/").
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
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	leases  map[string]clientv3.LeaseID // node → etcd lease holding its keys
	subnets map[string]netip.Prefix     // node → subnet it holds
	records map[string]cluster.Node     // node → last published record
	lastErr error
}

var _ store.Store = (*Store)(nil)

// Open validates opts and creates the client. It does not wait for etcd to
// answer: an agent must start (and keep its datapath) while etcd is down.
func Open(opts Options) (*Store, error) {
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

func validate(o *Options) error {
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
		o.TTL = 60 * time.Second
	}
	if o.TTL < 5*time.Second {
		return fmt.Errorf("lease TTL %s is too short (minimum 5s)", o.TTL)
	}
	if o.Prefix == "" {
		o.Prefix = "/weft/"
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

func (s *Store) subnetsPrefix() string { return s.opts.Prefix + "subnets/" }
func (s *Store) nodesPrefix() string   { return s.opts.Prefix + "nodes/" }

func (s *Store) subnetKey(p netip.Prefix) string {
	return fmt.Sprintf("%s%s-%d", s.subnetsPrefix(), p.Addr(), p.Bits())
}

func (s *Store) nodeKey(node string) string { return s.nodesPrefix() + node }

// parseSubnetKey is subnetKey's inverse.
func (s *Store) parseSubnetKey(key string) (netip.Prefix, error) {
	return netip.ParsePrefix(strings.Replace(strings.TrimPrefix(key, s.subnetsPrefix()), "-", "/", 1))
}

// note records the outcome of a datastore call for Err.
func (s *Store) note(err error) error {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	return err
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
