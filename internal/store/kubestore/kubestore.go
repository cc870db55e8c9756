// Package kubestore is Weft's datastore inside Kubernetes: the Node objects
// themselves. A node's subnet lease is its Node.spec.podCIDR, which
// kube-controller-manager allocates (--allocate-node-cidrs, what
// `kubeadm init --pod-network-cidr` turns on); how to reach the node
// (underlay IP, VTEP MAC, backend) is kept in annotations under
// AnnotationPrefix on that Node. Peers come from a Node informer.
//
// The store writes only to the agent's own Node, and only the annotations
// under its prefix, plus spec.podCIDR when it allocates subnets itself (a
// cluster without node IPAM, by explicit configuration; see allocate.go).
// It never changes a podCIDR that is set: the API server refuses that, and
// the controller-manager owns it.
package kubestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// AnnotationPrefix starts every annotation Weft writes on a Node.
const AnnotationPrefix = "weft.dev/"

// The annotations of a node's record. A Node without a valid
// AnnotUnderlayIP is not (yet) a Weft peer.
const (
	AnnotUnderlayIP = AnnotationPrefix + "underlay-ip"
	AnnotVTEPMAC    = AnnotationPrefix + "vtep-mac"
	AnnotBackend    = AnnotationPrefix + "backend"
	AnnotProbePort  = AnnotationPrefix + "probe-port"
	AnnotVersion    = AnnotationPrefix + "version"
)

var recordAnnotations = []string{AnnotUnderlayIP, AnnotVTEPMAC, AnnotBackend, AnnotProbePort, AnnotVersion}

// Config configures the Kubernetes datastore.
type Config struct {
	// Client is a dynamic client (dynamic.NewForConfig); see objects.go
	// for why not the typed clientset.
	Client dynamic.Interface
	// NodeName is the agent's own Node, the only one it writes to.
	NodeName string
	// AllocateSubnets makes Weft allocate a subnet for a Node that has no
	// podCIDR and record it as the Node's podCIDR, for clusters whose
	// controller-manager runs without --allocate-node-cidrs. A podCIDR set
	// by anyone else always wins.
	AllocateSubnets bool
	// ClusterCIDR is where subnets come from when AllocateSubnets is set;
	// otherwise, when valid, a podCIDR outside it is refused with an error
	// (the agent's cluster CIDR must match the cluster's).
	ClusterCIDR netip.Prefix
	// SubnetLen is the prefix length of allocated subnets (default 24).
	SubnetLen int
	// AllocateGrace is how long a new Node is left to the
	// controller-manager before Weft allocates for it (default 10 s), so
	// that a cluster with node IPAM never sees Weft race it.
	AllocateGrace time.Duration
	// Namespace holds the coordination Leases that make self-allocation
	// safe between nodes (default kube-system).
	Namespace string
	// OpTimeout bounds each API call (default 10 s).
	OpTimeout time.Duration
	Logger    *slog.Logger
}

// Store is the Kubernetes implementation of store.Store.
type Store struct {
	cfg    Config
	nodes  dynamic.NamespaceableResourceInterface
	leases dynamic.ResourceInterface
	log    *slog.Logger

	mu      sync.Mutex
	lastErr error
	// lastContact is when a call last got an answer from the API server.
	lastContact time.Time
}

var _ store.Store = (*Store)(nil)

// Open checks cfg and returns the store. It does not contact the API
// server, and so takes no context: an agent must start, and keep its
// datapath, while the API server is down. etcdstore.Open has the same
// shape.
func Open(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubernetes datastore: no client")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("kubernetes datastore: the node name is empty (set --node-name or NODE_NAME)")
	}
	if cfg.SubnetLen == 0 {
		cfg.SubnetLen = 24
	}
	if cfg.AllocateSubnets {
		if !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Addr().Is4() {
			return nil, errors.New("kubernetes datastore: allocating subnets needs an IPv4 cluster CIDR")
		}
		if cfg.SubnetLen < cfg.ClusterCIDR.Bits() || cfg.SubnetLen > 30 {
			return nil, fmt.Errorf("kubernetes datastore: subnet length /%d does not fit cluster CIDR %s", cfg.SubnetLen, cfg.ClusterCIDR)
		}
	}
	if cfg.AllocateGrace == 0 {
		cfg.AllocateGrace = 10 * time.Second
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "kube-system"
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.ClusterCIDR = cfg.ClusterCIDR.Masked()
	return &Store{
		cfg:    cfg,
		nodes:  cfg.Client.Resource(nodesResource),
		leases: cfg.Client.Resource(leasesResource).Namespace(cfg.Namespace),
		log:    cfg.Logger,
	}, nil
}

// note records err as the last datastore error (nil clears it and is a
// contact) and returns it.
func (s *Store) note(err error) error {
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		s.lastContact = time.Now()
	}
	s.mu.Unlock()
	return err
}

// LastContact is when a call or the Node informer last got an answer from
// the API server; zero before the first.
func (s *Store) LastContact() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastContact
}

// Err is the last API error, or nil when the last call worked.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Close releases nothing: the informers end with their Watch's context.
func (s *Store) Close() error { return nil }

func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

func (s *Store) getNode(ctx context.Context, name string) (nodeObj, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	u, err := s.nodes.Get(octx, name, metav1.GetOptions{})
	if err != nil {
		return nodeObj{}, fmt.Errorf("get node %s: %w", name, err)
	}
	return nodeFrom(u)
}

// AcquireLease returns the node's podCIDR, waiting until it is set: the
// controller-manager sets it about 0.1 s after the Node registers. With
// AllocateSubnets, a Node without one gets a subnet from Weft.
func (s *Store) AcquireLease(ctx context.Context, node string, _ netip.Prefix) (store.Lease, error) {
	l, err := s.acquire(ctx, node)
	return l, s.note(err)
}

func (s *Store) acquire(ctx context.Context, node string) (store.Lease, error) {
	wait := 100 * time.Millisecond
	var reason error
	logged := false
	for {
		n, err := s.getNode(ctx, node)
		switch {
		case err == nil:
			if sub, ok, err := podCIDR(n); err != nil {
				return store.Lease{}, err
			} else if ok {
				if err := s.checkInCluster(node, sub); err != nil {
					return store.Lease{}, err
				}
				return store.Lease{Node: node, Subnet: sub}, nil
			}
			if s.cfg.AllocateSubnets && time.Since(n.Created) < s.cfg.AllocateGrace {
				reason = fmt.Errorf("node %s has no podCIDR yet; leaving it to the controller-manager for %s before allocating one", node, s.cfg.AllocateGrace)
			} else if s.cfg.AllocateSubnets {
				sub, err := s.allocate(ctx, n)
				if err == nil || errors.Is(err, store.ErrCIDRExhausted) {
					return store.Lease{Node: node, Subnet: sub}, err
				}
				reason = err
			} else {
				reason = fmt.Errorf("node %s has no podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs (kubeadm init --pod-network-cidr), or run Weft with subnet allocation turned on", node)
			}
		case apierrors.IsNotFound(err):
			reason = fmt.Errorf("node %s does not exist (is the node name right?): %w", node, err)
		default:
			reason = err
		}
		if !logged {
			s.log.Info("waiting for the node's pod subnet", "node", node, "reason", reason)
			logged = true
		}
		s.note(reason)
		select {
		case <-ctx.Done():
			return store.Lease{}, fmt.Errorf("acquire subnet for node %s: %w (last: %v)", node, ctx.Err(), reason)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (s *Store) checkInCluster(node string, sub netip.Prefix) error {
	cc := s.cfg.ClusterCIDR
	if cc.IsValid() && (!cc.Contains(sub.Addr()) || sub.Bits() < cc.Bits()) {
		return fmt.Errorf("node %s has podCIDR %s outside Weft's cluster CIDR %s: set Weft's cluster CIDR to the cluster's (kubeadm --pod-network-cidr)", node, sub, cc)
	}
	return nil
}

// podCIDR is the Node's IPv4 pod subnet, if it has one.
func podCIDR(n nodeObj) (netip.Prefix, bool, error) {
	cidrs := n.PodCIDRs
	if len(cidrs) == 0 && n.PodCIDR != "" {
		cidrs = []string{n.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("node %s: bad podCIDR %q: %w", n.Name, c, err)
		}
		if p.Addr().Is4() {
			return p.Masked(), true, nil
		}
	}
	return netip.Prefix{}, false, nil
}

// RenewLease checks that the Node still has the subnet. A podCIDR never
// expires, but a Node deleted and registered again may get another one.
func (s *Store) RenewLease(ctx context.Context, l store.Lease) (store.Lease, error) {
	n, err := s.getNode(ctx, l.Node)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return l, s.note(fmt.Errorf("node %s was deleted: %w", l.Node, store.ErrLeaseLost))
		}
		return l, s.note(err)
	}
	sub, ok, err := podCIDR(n)
	if err != nil {
		return l, s.note(err)
	}
	if !ok || sub != l.Subnet {
		return l, s.note(fmt.Errorf("node %s has podCIDR %q now, not %s: %w", l.Node, n.PodCIDR, l.Subnet, store.ErrLeaseLost))
	}
	return l, s.note(nil)
}

// Publish writes the node's record into its own Node's annotations, and
// only when they differ: every write wakes every peer's informer.
func (s *Store) Publish(ctx context.Context, rec cluster.Node) error {
	return s.note(s.publish(ctx, rec))
}

func (s *Store) publish(ctx context.Context, rec cluster.Node) error {
	if rec.Name != s.cfg.NodeName {
		return fmt.Errorf("publish %s: this agent writes only its own node %s", rec.Name, s.cfg.NodeName)
	}
	if !rec.UnderlayIP.IsValid() {
		return fmt.Errorf("publish %s: no underlay IP", rec.Name)
	}
	n, err := s.getNode(ctx, rec.Name)
	if err != nil {
		return err
	}
	if sub, ok, err := podCIDR(n); err != nil {
		return err
	} else if rec.Subnet.IsValid() && (!ok || sub != rec.Subnet.Masked()) {
		return fmt.Errorf("publish %s: subnet %s is not the node's podCIDR %q", rec.Name, rec.Subnet, n.PodCIDR)
	}
	want := annotations(rec)
	changed := map[string]*string{}
	for _, k := range recordAnnotations {
		v, ok := want[k]
		cur, has := n.Annotations[k]
		switch {
		case ok && (!has || cur != v):
			changed[k] = &v
		case !ok && has:
			changed[k] = nil // a field the record no longer has
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return s.patchAnnotations(ctx, rec.Name, changed)
}

func annotations(rec cluster.Node) map[string]string {
	a := map[string]string{
		AnnotUnderlayIP: rec.UnderlayIP.String(),
		AnnotBackend:    string(rec.Backend),
	}
	if rec.VTEPMAC != "" {
		a[AnnotVTEPMAC] = rec.VTEPMAC
	}
	if rec.ProbePort != 0 {
		a[AnnotProbePort] = strconv.Itoa(rec.ProbePort)
	}
	if rec.Version != "" {
		a[AnnotVersion] = rec.Version
	}
	return a
}

// patchAnnotations sets (or, for nil values, removes) annotations with a
// JSON merge patch, which touches nothing else on the Node.
func (s *Store) patchAnnotations(ctx context.Context, node string, a map[string]*string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": a}})
	if err != nil {
		return err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.nodes.Patch(octx, node, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "weft"}); err != nil {
		return fmt.Errorf("patch annotations of node %s: %w", node, err)
	}
	return nil
}

// Remove takes the node's record off its Node, so peers stop routing to
// it. The Node and its podCIDR stay: they belong to the cluster. A Node
// that is deleted leaves every peer's set by itself.
func (s *Store) Remove(ctx context.Context, node string) error {
	if node != s.cfg.NodeName {
		return s.note(fmt.Errorf("remove %s: this agent writes only its own node %s", node, s.cfg.NodeName))
	}
	n, err := s.getNode(ctx, node)
	if apierrors.IsNotFound(err) {
		return s.note(nil)
	}
	if err != nil {
		return s.note(err)
	}
	drop := map[string]*string{}
	for _, k := range recordAnnotations {
		if _, ok := n.Annotations[k]; ok {
			drop[k] = nil
		}
	}
	if len(drop) == 0 {
		return s.note(nil)
	}
	return s.note(s.patchAnnotations(ctx, node, drop))
}

// record reads a peer's record off its Node. ok is false for a Node that
// is not a Weft peer yet (no podCIDR or no underlay IP); err says what is
// wrong with one whose annotations are malformed.
func record(n nodeObj) (rec cluster.Node, ok bool, err error) {
	sub, has, err := podCIDR(n)
	if err != nil || !has {
		return rec, false, err
	}
	a := n.Annotations
	ipStr, has := a[AnnotUnderlayIP]
	if !has {
		return rec, false, nil
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		return rec, false, fmt.Errorf("node %s: bad %s %q", n.Name, AnnotUnderlayIP, ipStr)
	}
	rec = cluster.Node{
		Name:       n.Name,
		UnderlayIP: ip,
		Subnet:     sub,
		Backend:    cluster.Backend(a[AnnotBackend]),
		Version:    a[AnnotVersion],
	}
	if mac, has := a[AnnotVTEPMAC]; has {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return rec, false, fmt.Errorf("node %s: bad %s %q", n.Name, AnnotVTEPMAC, mac)
		}
		rec.VTEPMAC = hw.String()
	}
	if p, has := a[AnnotProbePort]; has {
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return rec, false, fmt.Errorf("node %s: bad %s %q", n.Name, AnnotProbePort, p)
		}
		rec.ProbePort = port
	}
	return rec, true, nil
}
