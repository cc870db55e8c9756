package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// AcquireLease gives node the subnet it already holds, if any (a restarted
// agent keeps its subnet and its pods keep their addresses), else prefer
// when it is a free subnet of the cluster CIDR (the node's pods still use
// it although its lease lapsed while the agent was down), or else the
// lowest free subnet of the cluster CIDR.
func (s *Store) AcquireLease(ctx context.Context, node string, prefer netip.Prefix) (store.Lease, error) {
	l, err := s.acquire(ctx, node, prefer)
	if errors.Is(err, store.ErrCIDRExhausted) {
		s.note(nil) // the datastore answered; the cluster is full
		return l, err
	}
	return l, s.note(err)
}

func (s *Store) acquire(ctx context.Context, node string, prefer netip.Prefix) (store.Lease, error) {
	if err := validNodeName(node); err != nil {
		return store.Lease{}, err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return store.Lease{}, fmt.Errorf("list subnet leases in etcd: %w", err)
	}
	taken := map[netip.Prefix]bool{}
	var own []netip.Prefix
	var ownLease clientv3.LeaseID
	for _, kv := range resp.Kvs {
		p, err := s.parseSubnetKey(string(kv.Key))
		if err != nil {
			s.log.Warn("ignoring malformed subnet key in etcd", "key", string(kv.Key), "err", err)
			continue
		}
		taken[p] = true
		if string(kv.Value) == node {
			own = append(own, p)
			if s.fits(p) && ownLease == 0 {
				ownLease = clientv3.LeaseID(kv.Lease)
			}
		}
	}

	// Our own subnet first, on our own etcd lease when it is still alive,
	// so that the node record attached to it never disappears for peers.
	for _, p := range own {
		if !s.fits(p) {
			continue
		}
		id, ttl, err := s.keepOrGrant(ctx, ownLease)
		if err != nil {
			return store.Lease{}, err
		}
		ok, err := s.claim(ctx, p, node, id, true)
		if err != nil {
			return store.Lease{}, err
		}
		if ok {
			s.releaseOthers(ctx, node, own, p)
			return s.hold(node, p, id, ttl), nil
		}
	}

	id, ttl, err := s.keepOrGrant(ctx, 0)
	if err != nil {
		return store.Lease{}, err
	}
	if prefer.IsValid() && s.fits(prefer) && !taken[prefer] {
		ok, err := s.claim(ctx, prefer, node, id, false)
		if err != nil {
			return store.Lease{}, err
		}
		if ok {
			s.releaseOthers(ctx, node, own, prefer)
			s.log.Info("claimed the subnet this node's pods already use again", "node", node, "subnet", prefer)
			return s.hold(node, prefer, id, ttl), nil
		}
	}
	total := 0
	for p := range cluster.Subnets(s.opts.ClusterCIDR, s.opts.SubnetLen) {
		total++
		if taken[p] {
			continue
		}
		ok, err := s.claim(ctx, p, node, id, false)
		if err != nil {
			return store.Lease{}, err
		}
		if ok {
			s.releaseOthers(ctx, node, own, p)
			return s.hold(node, p, id, ttl), nil
		}
	}
	s.revoke(ctx, id)
	return store.Lease{}, fmt.Errorf("node %s: %w: all %d /%d subnets of %s are leased to other nodes (grow --cluster-cidr, use a longer --subnet-len, or remove nodes that left)",
		node, store.ErrCIDRExhausted, total, s.opts.SubnetLen, s.opts.ClusterCIDR)
}

// fits reports whether p is a subnet of the current configuration; a
// subnet leased under an older cluster CIDR or subnet length is released.
func (s *Store) fits(p netip.Prefix) bool {
	return p.Bits() == s.opts.SubnetLen && s.opts.ClusterCIDR.Contains(p.Addr()) && p.Masked() == p
}

// keepOrGrant renews etcd lease id if it is alive, or grants a new one.
func (s *Store) keepOrGrant(ctx context.Context, id clientv3.LeaseID) (clientv3.LeaseID, time.Duration, error) {
	if id != 0 {
		octx, cancel := s.op(ctx)
		resp, err := s.cli.KeepAliveOnce(octx, id)
		cancel()
		if err == nil {
			return id, time.Duration(resp.TTL) * time.Second, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, 0, fmt.Errorf("renew etcd lease %x: %w", int64(id), err)
		}
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Grant(octx, int64(s.opts.TTL/time.Second))
	if err != nil {
		return 0, 0, fmt.Errorf("grant etcd lease: %w", err)
	}
	return resp.ID, time.Duration(resp.TTL) * time.Second, nil
}

// claim writes the subnet key for node on lease id, atomically: when mine
// is set only if node already holds it, otherwise only if nobody does.
func (s *Store) claim(ctx context.Context, p netip.Prefix, node string, id clientv3.LeaseID, mine bool) (bool, error) {
	key := s.subnetKey(p)
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if mine {
		cmp = clientv3.Compare(clientv3.Value(key), "=", node)
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(cmp).Then(clientv3.OpPut(key, node, clientv3.WithLease(id))).Commit()
	if err != nil {
		return false, fmt.Errorf("claim subnet %s in etcd: %w", p, err)
	}
	return resp.Succeeded, nil
}

// releaseOthers deletes subnets node held besides keep (left over from an
// older configuration), so that a node never holds two.
func (s *Store) releaseOthers(ctx context.Context, node string, own []netip.Prefix, keep netip.Prefix) {
	for _, p := range own {
		if p == keep {
			continue
		}
		key := s.subnetKey(p)
		octx, cancel := s.op(ctx)
		_, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.Value(key), "=", node)).Then(clientv3.OpDelete(key)).Commit()
		cancel()
		if err != nil {
			// It lapses with its old etcd lease anyway.
			s.log.Warn("could not release old subnet", "node", node, "subnet", p, "err", err)
		} else {
			s.log.Info("released subnet of an older configuration", "node", node, "subnet", p)
		}
	}
}

func (s *Store) revoke(ctx context.Context, id clientv3.LeaseID) {
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

// RenewLease extends the lease. If it lapsed (etcd was unreachable for
// longer than the TTL) and the subnet is still free, it is claimed again and
// the node's record republished; if another node took it, ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, l store.Lease) (store.Lease, error) {
	nl, err := s.renew(ctx, l)
	return nl, s.note(err)
}

func (s *Store) renew(ctx context.Context, l store.Lease) (store.Lease, error) {
	s.mu.Lock()
	id, ok := s.leases[l.Node]
	s.mu.Unlock()
	if !ok {
		return l, fmt.Errorf("renew lease of %s: not acquired by this process", l.Node)
	}
	nid, ttl, err := s.keepOrGrant(ctx, id)
	if err != nil {
		return l, err
	}
	key := s.subnetKey(l.Subnet)
	octx, cancel := s.op(ctx)
	resp, err := s.cli.Get(octx, key)
	cancel()
	if err != nil {
		return l, fmt.Errorf("check subnet %s in etcd: %w", l.Subnet, err)
	}
	if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) != l.Node {
		return l, fmt.Errorf("subnet %s of node %s is now held by node %s: %w", l.Subnet, l.Node, resp.Kvs[0].Value, store.ErrLeaseLost)
	}
	if nid == id && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == id {
		return s.hold(l.Node, l.Subnet, id, ttl), nil
	}
	// The lease lapsed, or the key lost it: claim the subnet again.
	ok, err = s.claim(ctx, l.Subnet, l.Node, nid, len(resp.Kvs) == 1)
	if err != nil {
		return l, err
	}
	if !ok {
		return l, fmt.Errorf("subnet %s of node %s was taken by another node: %w", l.Subnet, l.Node, store.ErrLeaseLost)
	}
	nl := s.hold(l.Node, l.Subnet, nid, ttl)
	s.log.Info("subnet lease had lapsed and was claimed again", "node", l.Node, "subnet", l.Subnet)
	s.mu.Lock()
	rec, had := s.records[l.Node]
	s.mu.Unlock()
	if had {
		if err := s.Publish(ctx, rec); err != nil {
			return nl, err
		}
	}
	return nl, nil
}
