package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// What a store does for agents of the layout before claims/ (see the
// package comment): read their subnets/ keys' records, keep its own old
// lease alive for them, and delete its old keys where etcd lets it.

// legacyRecords adds to v, at revision rev, the records of the nodes that
// subnets/ keys name: whether such a key is an old agent's depends on
// its record (see view.legacyNodes). Once no agent of the old layout is
// left there are no such keys, and no extra read.
func (s *Store) legacyRecords(ctx context.Context, v *view, rev int64) error {
	var gets []clientv3.Op
	seen := map[string]bool{}
	for _, l := range v.legacy {
		if !seen[l.node] && validNodeName(l.node) == nil {
			seen[l.node] = true
			gets = append(gets, clientv3.OpGet(s.nodeKey(l.node), clientv3.WithRev(rev)))
		}
	}
	if len(gets) == 0 {
		return nil
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).Then(gets...).Commit()
	if err != nil {
		return fmt.Errorf("read the records of agents of the old layout: %w", err)
	}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			s.apply(v, kv, false)
		}
	}
	return nil
}

// keepLegacyLease renews the etcd lease of node's subnets/ key of the old
// layout while an agent of the old layout still runs elsewhere: that agent
// reads only subnets/ keys, and keeps routing to node while its key
// lives. It needs no write access: renewing a lease is not a write.
func (s *Store) keepLegacyLease(ctx context.Context, node string, v *view) {
	old := v.legacyNodes()
	others := false
	for n := range old {
		others = others || n != node
	}
	if !others {
		return
	}
	for p, l := range v.legacy {
		if l.node != node || l.lease == 0 {
			continue
		}
		octx, cancel := s.op(ctx)
		_, err := s.cli.KeepAliveOnce(octx, clientv3.LeaseID(l.lease))
		cancel()
		if err != nil {
			s.log.Debug("could not renew this node's lease of the old layout", "subnet", p, "err", err)
		}
	}
}

// removeLegacy deletes node's subnets/ keys of the old layout where its
// role allows (etcd's auth off); otherwise they lapse with their lease.
func (s *Store) removeLegacy(ctx context.Context, node string) {
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, LegacySubnetsPrefix(s.opts.Prefix), clientv3.WithPrefix())
	if err != nil {
		s.log.Warn("could not list the subnet leases of the old layout", "err", err)
		return
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != node {
			continue
		}
		k := string(kv.Key)
		_, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.Value(k), "=", node)).Then(clientv3.OpDelete(k)).Commit()
		if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
			s.log.Warn("could not delete a subnet lease of the old layout", "key", k, "err", err)
		}
	}
}
