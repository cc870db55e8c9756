package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// AcquireLease gives node the subnet it already holds, if any (a restarted
// agent keeps its subnet and its pods keep their addresses), else the one
// its agent held under the old layout, else prefer when no running node
// holds it (the node's pods still use it although the node lapsed while
// its agent was down), else the lowest subnet nobody claims, else the
// lowest whose claimants all lapsed.
func (s *Store) AcquireLease(ctx context.Context, node string, prefer netip.Prefix) (store.Lease, error) {
	l, err := s.acquire(ctx, node, prefer)
	if errors.Is(err, store.ErrCIDRExhausted) || errors.Is(err, store.ErrCredentials) {
		s.note(nil) // the datastore answered; the cluster is full, or the node misconfigured
		return l, err
	}
	return l, s.note(err)
}

func (s *Store) acquire(ctx context.Context, node string, prefer netip.Prefix) (store.Lease, error) {
	if err := validNodeName(node); err != nil {
		return store.Lease{}, err
	}
	// Who the store acts as is checked before anything is written; the
	// first read, which writes nothing, goes meanwhile.
	idErr := make(chan error, 1)
	go func() { idErr <- s.checkIdentity(ctx, node) }()
	v, err := s.readClaims(ctx)
	if ierr := <-idErr; ierr != nil {
		return store.Lease{}, ierr
	}
	if err != nil {
		return store.Lease{}, denied(err, node)
	}
	id, ttl, aliveOps, err := s.alive(ctx, node, v)
	if err != nil {
		return store.Lease{}, denied(err, node)
	}
	s.keepLegacyLease(ctx, node, v)
	for p := range s.candidates(v, node, prefer) {
		ok, err := s.tryClaim(ctx, node, p, aliveOps...)
		if err != nil {
			s.revoke(ctx, leaseIfNew(id, aliveOps))
			return store.Lease{}, denied(err, node)
		}
		aliveOps = nil // made with the first claim
		if ok {
			if prefer.IsValid() && p == prefer && !claimed(v, node, p) {
				s.log.Info("claimed the subnet this node's pods already use again", "node", node, "subnet", p)
			}
			return s.hold(node, p, id, ttl), nil
		}
	}
	s.withdraw(ctx, node, id)
	total := 1 << (s.opts.SubnetLen - s.opts.ClusterCIDR.Bits())
	return store.Lease{}, fmt.Errorf("node %s: %w: all %d /%d subnets of %s are held by other nodes (grow --cluster-cidr, use a longer --subnet-len, or remove nodes that left)",
		node, store.ErrCIDRExhausted, total, s.opts.SubnetLen, s.opts.ClusterCIDR)
}

// claimed reports whether node's claim in v is p.
func claimed(v *view, node string, p netip.Prefix) bool {
	n := v.nodes[node]
	return n != nil && n.subnet != nil && n.subnet.v == p
}

// candidates yields the subnets node may claim, in the order of
// AcquireLease: each fits the configuration and no running node but node
// holds it.
func (s *Store) candidates(v *view, node string, prefer netip.Prefix) iter.Seq[netip.Prefix] {
	o, claimed := v.owners(), v.claimedSubnets()
	return func(yield func(netip.Prefix) bool) {
		seen := map[netip.Prefix]bool{}
		try := func(p netip.Prefix) bool {
			if seen[p] || !s.fits(p) {
				return true
			}
			seen[p] = true
			if h, ok := o.subnets[p]; ok && h.live && h.node != node {
				return true
			}
			if l, ok := v.legacy[p]; ok && l.node != node {
				return true // an old agent's, perhaps before its record is there
			}
			return yield(p)
		}
		if n := v.nodes[node]; n != nil && n.subnet != nil && !try(n.subnet.v) {
			return
		}
		for p, l := range v.legacy {
			if l.node == node && !try(p) {
				return
			}
		}
		if prefer.IsValid() && !try(prefer) {
			return
		}
		// Subnets nobody claims first: a lapsed node's subnet is taken only
		// when nothing else is left, so that it keeps its routes as long
		// as it can.
		for p := range cluster.Subnets(s.opts.ClusterCIDR, s.opts.SubnetLen) {
			if !claimed[p] && !try(p) {
				return
			}
		}
		for p := range cluster.Subnets(s.opts.ClusterCIDR, s.opts.SubnetLen) {
			if !try(p) {
				return
			}
		}
	}
}

// fits reports whether p is a subnet of the current configuration; a
// subnet claimed under an older cluster CIDR or subnet length is given up.
func (s *Store) fits(p netip.Prefix) bool {
	return p.Bits() == s.opts.SubnetLen && s.opts.ClusterCIDR.Contains(p.Addr()) && p.Masked() == p
}

// readClaims reads what decides subnet holders (subnet claims, alive keys
// and the old layout's leases) at one revision.
func (s *Store) readClaims(ctx context.Context) (*view, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).Then(s.claimReads()...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read the subnet claims in etcd: %w", err)
	}
	return s.claimsView(ctx, resp)
}

func (s *Store) claimReads() []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(SubnetClaimsPrefix(s.opts.Prefix), clientv3.WithPrefix()),
		clientv3.OpGet(AlivePrefix(s.opts.Prefix), clientv3.WithPrefix()),
		clientv3.OpGet(LegacySubnetsPrefix(s.opts.Prefix), clientv3.WithPrefix()),
	}
}

// claimsView folds the claimReads that end resp into a view.
func (s *Store) claimsView(ctx context.Context, resp *clientv3.TxnResponse) (*view, error) {
	v := newView()
	for _, r := range resp.Responses[len(resp.Responses)-len(s.claimReads()):] {
		for _, kv := range r.GetResponseRange().Kvs {
			s.apply(v, kv, false)
		}
	}
	return v, s.legacyRecords(ctx, v, resp.Header.Revision)
}

// tryClaim makes p node's claim, with extra writes in the same
// transaction, and says whether node holds p then. When no other claim
// names p the transaction says so itself and node holds it: the common
// case, one round trip that reads nothing back. Otherwise it writes the
// claim (only if it names another subnet: a rewrite would move the
// claim's revision) and reads every claim back at the same revision to
// decide.
func (s *Store) tryClaim(ctx context.Context, node string, p netip.Prefix, extra ...clientv3.Op) (bool, error) {
	key, val := s.subnetClaimKey(node), p.String()
	nobodyElse := []clientv3.Cmp{
		// Every subnet claim names another subnet (false when there is
		// none: the slow path then answers).
		clientv3.Compare(clientv3.Value(SubnetClaimsPrefix(s.opts.Prefix)), "!=", val).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(LegacySubnetKey(s.opts.Prefix, p)), "=", 0),
	}
	put := clientv3.OpPut(key, val)
	putIfOther := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", val)}, nil, []clientv3.Op{put})
	octx, cancel := s.op(ctx)
	resp, err := s.cli.Txn(octx).If(nobodyElse...).
		Then(append([]clientv3.Op{put}, extra...)...).
		Else(append(append([]clientv3.Op{putIfOther}, extra...), s.claimReads()...)...).
		Commit()
	cancel()
	if err != nil {
		return false, fmt.Errorf("claim subnet %s: %w", p, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	v, err := s.claimsView(ctx, resp)
	if err != nil {
		return false, fmt.Errorf("claim subnet %s: %w", p, err)
	}
	h, ok := v.owners().subnets[p]
	return ok && h.node == node, nil
}

// withdraw deletes node's claim and alive key: it holds nothing.
func (s *Store) withdraw(ctx context.Context, node string, id clientv3.LeaseID) {
	octx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.cli.Txn(octx).Then(clientv3.OpDelete(s.subnetClaimKey(node)), clientv3.OpDelete(s.aliveKey(node))).Commit(); err != nil {
		s.log.Warn("could not withdraw this node's claim", "node", node, "err", err)
	}
	s.revoke(ctx, id)
	s.mu.Lock()
	delete(s.leases, node)
	s.mu.Unlock()
}

// alive keeps node running: it renews the etcd lease of node's alive key
// in v when that lease lives (a restarted agent keeps the key, and so
// since when it runs), or grants a new lease and returns the write that
// makes the alive key on it, for the caller's next transaction.
func (s *Store) alive(ctx context.Context, node string, v *view) (clientv3.LeaseID, time.Duration, []clientv3.Op, error) {
	if n := v.nodes[node]; n != nil && n.aliveLease != 0 {
		id := clientv3.LeaseID(n.aliveLease)
		octx, cancel := s.op(ctx)
		ka, err := s.cli.KeepAliveOnce(octx, id)
		cancel()
		if err == nil {
			return id, time.Duration(ka.TTL) * time.Second, nil, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, 0, nil, fmt.Errorf("renew etcd lease %x: %w", int64(id), err)
		}
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	g, err := s.cli.Grant(octx, int64(s.opts.TTL/time.Second))
	if err != nil {
		return 0, 0, nil, fmt.Errorf("grant etcd lease: %w", err)
	}
	return g.ID, time.Duration(g.TTL) * time.Second, []clientv3.Op{clientv3.OpPut(s.aliveKey(node), "", clientv3.WithLease(g.ID))}, nil
}

func (s *Store) revoke(ctx context.Context, id clientv3.LeaseID) {
	if id == 0 {
		return
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	s.cli.Revoke(octx, id) // best effort: an unused lease also lapses by itself
}

func (s *Store) hold(node string, p netip.Prefix, id clientv3.LeaseID, ttl time.Duration) store.Lease {
	s.mu.Lock()
	s.leases[node] = id
	s.subnets[node] = p
	s.mu.Unlock()
	return store.Lease{Node: node, Subnet: p, Expires: time.Now().Add(ttl)}
}

// RenewLease keeps the node running (its alive key) and checks that it
// still holds its subnet. If its etcd lease lapsed (etcd was unreachable,
// or the agent down, for longer than the TTL) it comes back as a new
// running node: it keeps the subnet when no running node claimed it
// meanwhile, and gets ErrLeaseLost when one did. Another node's claim
// made while this one runs does not take the subnet (see Conflicts).
func (s *Store) RenewLease(ctx context.Context, l store.Lease) (store.Lease, error) {
	nl, err := s.renew(ctx, l)
	if errors.Is(err, store.ErrLeaseLost) {
		s.note(nil)
		return nl, err
	}
	return nl, s.note(err)
}

func (s *Store) renew(ctx context.Context, l store.Lease) (store.Lease, error) {
	s.mu.Lock()
	_, ok := s.leases[l.Node]
	s.mu.Unlock()
	if !ok {
		return l, fmt.Errorf("renew lease of %s: not acquired by this process", l.Node)
	}
	v, err := s.readClaims(ctx)
	if err != nil {
		return l, denied(err, l.Node)
	}
	id, ttl, aliveOps, err := s.alive(ctx, l.Node, v)
	if err != nil {
		return l, denied(err, l.Node)
	}
	s.keepLegacyLease(ctx, l.Node, v)
	// Read while this node still ran, or, after a lapse, as if it did not:
	// either way a running node holding the subnet now holds it for good.
	if h, ok := v.owners().subnets[l.Subnet]; ok && h.node != l.Node && h.live {
		s.dropClaim(ctx, l.Node, l.Subnet)
		s.revoke(ctx, leaseIfNew(id, aliveOps))
		return l, fmt.Errorf("subnet %s of node %s is now held by node %s (%s): %w", l.Subnet, l.Node, h.node, h.describe(), store.ErrLeaseLost)
	}
	// Held, or nobody claims it any more (an admin deleted the claim):
	// claim it again, running again if it lapsed.
	held, err := s.tryClaim(ctx, l.Node, l.Subnet, aliveOps...)
	if err != nil {
		return l, denied(err, l.Node)
	}
	if !held {
		s.dropClaim(ctx, l.Node, l.Subnet)
		return l, fmt.Errorf("subnet %s of node %s was claimed by another node: %w", l.Subnet, l.Node, store.ErrLeaseLost)
	}
	return s.hold(l.Node, l.Subnet, id, ttl), nil
}

// leaseIfNew is id when alive granted it (and its key is not made yet),
// else 0.
func leaseIfNew(id clientv3.LeaseID, aliveOps []clientv3.Op) clientv3.LeaseID {
	if len(aliveOps) == 0 {
		return 0
	}
	return id
}

// dropClaim deletes node's claim if it still names p: a subnet it lost
// is another node's now, and a stale claim would only read as a bid.
func (s *Store) dropClaim(ctx context.Context, node string, p netip.Prefix) {
	key := s.subnetClaimKey(node)
	octx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.Value(key), "=", p.String())).Then(clientv3.OpDelete(key)).Commit(); err != nil {
		s.log.Warn("could not delete the claim on a lost subnet", "node", node, "subnet", p, "err", err)
	}
}
