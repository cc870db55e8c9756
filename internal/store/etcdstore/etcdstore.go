// Package etcdstore is Weft's datastore outside Kubernetes: node records,
// subnet claims and liveness kept in etcd. It owns the keys under its
// prefix (by default /weft/) and nothing else in etcd.
//
// Layout (keys.go):
//
//	<prefix>nodes/<node>            cluster.Node as JSON
//	<prefix>claims/subnet/<node>    the subnet the node claims, "10.244.3.0/24"
//	<prefix>claims/address/<node>   the underlay address it claims, "172.30.0.5"
//	<prefix>alive/<node>            empty, on the node's etcd lease (TTL)
//
// Every key names its writer, so that etcd's own authorization can tie
// each node to its keys: with client-certificate auth on, the node's
// certificate (CN = node name) is its etcd user, whose role (GrantNode,
// `weft etcd-grant`) may write exactly these keys of its own and read the
// rest. A node with stolen credentials can then write only its own record
// and claims. It can still claim any subnet or address, so no reader
// trusts a value: each decides who holds what from revisions, which etcd
// stamps and no node can choose (view.go):
//
//   - A claim counts since the revision that last wrote it (ModRevision).
//     A node has one key per kind of claim, so a claim it switches to
//     counts from the switch: it cannot keep an early revision for a
//     later choice, as it could with one key per subnet.
//   - A node runs while its alive key exists; since when is that key's
//     CreateRevision. A claim takes effect at the later of the two.
//   - The holder of a subnet (or an address) is, among the nodes
//     claiming it, the running one whose claim took effect first. So a
//     thief's claim on a subnet that a running node holds never wins while
//     that node runs, and a node that lapsed and comes back after another
//     claimed its subnet has lost it. When no claimant runs, the earliest
//     claim holds: a node whose agent is down keeps its subnet and its
//     peers keep routing to it, beyond its lease, until another node
//     claims the subnet (as Calico keeps a block's affinity and Cilium a
//     CiliumNode). Allocation claims such subnets only once no subnet is
//     left that nobody claims.
//   - A record gets a path (it is not marked NotHeld) only if its node
//     holds both the subnet and the underlay address it names.
//
// Nothing but the alive key is on an etcd lease: records and claims stay
// through a lapse. Two nodes that claim one free subnet at once both
// write, and both read back at their write's revision: the later one sees
// the earlier and moves on, so no subnet is ever held twice.
//
// The revisions do not remember history: a claim made while a subnet's
// holder ran, left in place, wins if that holder later lapses. The holder
// reports every such bid as a Conflict while it runs (the agent then says
// Degraded), and the operator revokes the bidder (`weft etcd-grant
// --revoke`). Without auth every guarantee above rests on the nodes'
// goodwill: any client can write any key.
//
// Agents before this layout kept one key per subnet, <prefix>subnets/<a.b.c.d-len>,
// holding the node's name, with the record, on the node's etcd lease.
// Readers still honour those (an old agent holds its subnet while its
// lease lives, its address since its record was written), so that a new
// agent neither takes an old agent's subnet nor drops its routes. A node
// counts as an old agent only while its record is on the same lease as
// its subnets/ key: a node's role cannot make that state (etcd refuses to
// attach a key to a lease holding a key the role may not write), so
// stolen credentials cannot revive an old key. A new
// agent takes its own old subnet back first, rewrites its record off the
// lease, and, while agents of the old layout still run elsewhere, keeps
// its old lease alive: they read only subnets/ keys, and so keep routing
// to it. Renewing a lease is not a write, so nodes need no access to
// subnets/. Once every agent is upgraded the old keys lapse with their
// leases.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
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

// DefaultTTL is how long a node counts as running without renewing its
// etcd lease. It is long on purpose, as flannel's: until it runs out, no
// other node can claim the subnet of an agent that is down (a crash loop,
// a slow image pull, a node rebooting), and even then only once no
// unclaimed subnet is left; the node's record and routes stay until
// then. A node that leaves for good gives its subnet back at once with
// `weft agent --cleanup`.
const DefaultTTL = 24 * time.Hour

// Config configures the etcd datastore.
type Config struct {
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS (CA alone: server-verified
	// TLS; with cert and key: mutual TLS). With etcd's auth on, the
	// certificate's common name is the etcd user: the node's name.
	CAFile, CertFile, KeyFile string
	// Prefix is the key prefix of everything Weft stores (default
	// DefaultPrefix).
	Prefix string
	// ClusterCIDR is where subnets are leased from; SubnetLen their size.
	ClusterCIDR netip.Prefix
	SubnetLen   int
	// TTL is how long a node counts as running without renewal (at
	// least 5 s).
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
	// certCN is the common name of the client certificate, "" without
	// one: the etcd user the store acts as when auth is on.
	certCN string

	mu      sync.Mutex
	leases  map[string]clientv3.LeaseID // node → etcd lease of its alive key
	subnets map[string]netip.Prefix     // node → subnet it holds
	records map[string]cluster.Node     // node → last published record
	// checked holds the nodes whose credentials were checked (identity.go).
	checked   map[string]bool
	conflicts []store.Conflict
	lastErr   error
	// lastContact is when a call last got an answer from etcd.
	lastContact time.Time
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.ConflictReporter = (*Store)(nil)
)

// Open validates opts and creates the client. It does not wait for etcd to
// answer, and so takes no context: an agent must start (and keep its
// datapath) while etcd is down. kubestore.Open has the same shape.
func Open(opts Config) (*Store, error) {
	if err := validate(&opts); err != nil {
		return nil, err
	}
	cli, cn, err := newClient(ClientConfig{Endpoints: opts.Endpoints, CAFile: opts.CAFile, CertFile: opts.CertFile, KeyFile: opts.KeyFile, DialTimeout: opts.OpTimeout})
	if err != nil {
		return nil, err
	}
	return &Store{
		cli:     cli,
		opts:    opts,
		log:     opts.Logger,
		certCN:  cn,
		leases:  map[string]clientv3.LeaseID{},
		subnets: map[string]netip.Prefix{},
		records: map[string]cluster.Node{},
		checked: map[string]bool{},
	}, nil
}

// ClientConfig is how to reach etcd: for Open, and for the operator's
// tools (`weft etcd-grant`) that act with an admin's certificate.
type ClientConfig struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
	DialTimeout               time.Duration
}

// NewClient returns an etcd client for c; the caller closes it.
func NewClient(c ClientConfig) (*clientv3.Client, error) {
	cli, _, err := newClient(c)
	return cli, err
}

// newClient also returns the client certificate's common name.
func newClient(c ClientConfig) (*clientv3.Client, string, error) {
	if len(c.Endpoints) == 0 {
		return nil, "", errors.New("etcd: no endpoints given")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	var tlsCfg *tls.Config
	cn := ""
	if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
		if (c.CertFile == "") != (c.KeyFile == "") {
			return nil, "", fmt.Errorf("etcd TLS: give both a client certificate and its key, or neither")
		}
		info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
		t, err := info.ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("etcd TLS: %w", err)
		}
		if c.CertFile != "" {
			if cn, err = commonName(c.CertFile); err != nil {
				return nil, "", err
			}
		}
		tlsCfg = t
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: c.DialTimeout,
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
		return nil, "", fmt.Errorf("etcd client for %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	return cli, cn, nil
}

// commonName is the subject common name of the first certificate in the
// PEM file path.
func commonName(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("etcd client certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("etcd client certificate %s: not PEM", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("etcd client certificate %s: %w", path, err)
	}
	return cert.Subject.CommonName, nil
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
	o.Prefix = normPrefix(o.Prefix)
	if o.OpTimeout == 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// normPrefix is prefix with the default filled in and a trailing slash.
func normPrefix(p string) string {
	if p == "" {
		p = DefaultPrefix
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
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

// Conflicts is what the last snapshot of Watch shows other nodes bid for
// of what the nodes this store leased for hold.
func (s *Store) Conflicts() []store.Conflict {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Conflict(nil), s.conflicts...)
}

// Close closes the client. The alive key is left to lapse (or be renewed
// by the next agent): closing is not leaving the cluster.
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
