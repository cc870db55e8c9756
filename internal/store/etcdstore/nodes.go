package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// Publish writes n as the node's record, off any etcd lease (a record
// outlives a lapse), and claims its underlay address. What is there
// already is not rewritten: every write wakes every peer's watch, and a
// rewritten claim would count from the rewrite.
func (s *Store) Publish(ctx context.Context, n cluster.Node) error {
	return s.note(s.publish(ctx, n))
}

func (s *Store) publish(ctx context.Context, n cluster.Node) error {
	if err := validNodeName(n.Name); err != nil {
		return err
	}
	n.NotHeld = ""
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node record %s: %w", n.Name, err)
	}
	s.mu.Lock()
	s.records[n.Name] = n
	s.mu.Unlock()

	key, akey, addr := s.nodeKey(n.Name), s.addressClaimKey(n.Name), n.UnderlayIP.String()
	sameRecord := []clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", string(b)), clientv3.Compare(clientv3.LeaseValue(key), "=", 0)}
	sameAddress := []clientv3.Cmp{clientv3.Compare(clientv3.Value(akey), "=", addr)}
	octx, cancel := s.op(ctx)
	defer cancel()
	_, err = s.cli.Txn(octx).Then(
		clientv3.OpTxn(sameAddress, nil, []clientv3.Op{clientv3.OpPut(akey, addr)}),
		clientv3.OpTxn(sameRecord, nil, []clientv3.Op{clientv3.OpPut(key, string(b))}),
	).Commit()
	if err != nil {
		return denied(fmt.Errorf("publish node record %s to etcd: %w", n.Name, err), n.Name)
	}
	return nil
}

// Remove deletes the node's record, claims and alive key: the node leaves
// the cluster and its peers remove their routes to it.
func (s *Store) Remove(ctx context.Context, node string) error {
	return s.note(s.remove(ctx, node))
}

func (s *Store) remove(ctx context.Context, node string) error {
	if err := validNodeName(node); err != nil {
		return err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	alive, err := s.cli.Get(octx, s.aliveKey(node))
	if err != nil {
		return fmt.Errorf("read the alive key of %s: %w", node, err)
	}
	if _, err := s.cli.Txn(octx).Then(RemoveOps(s.opts.Prefix, node)...).Commit(); err != nil {
		return denied(fmt.Errorf("remove node %s from etcd: %w", node, err), node)
	}
	s.removeLegacy(ctx, node)
	s.mu.Lock()
	id := s.leases[node]
	delete(s.leases, node)
	delete(s.subnets, node)
	delete(s.records, node)
	s.mu.Unlock()
	s.revoke(ctx, id)
	for _, kv := range alive.Kvs {
		if l := clientv3.LeaseID(kv.Lease); l != id {
			s.revoke(ctx, l)
		}
	}
	return nil
}

// Watch lists Weft's keys, calls fn with the records, then follows changes
// from the listed revision, calling fn with the full set after each batch.
// When the watch breaks (etcd down, revision compacted, leader lost) it
// lists again, so that nothing that happened meanwhile is missed.
//
// Each record is marked (NotHeld) unless its node holds the subnet and
// the underlay address it names (see the package comment), so that the
// datapath gives it no path and the agent can say why. Before each call
// of fn, Conflicts is brought up to date.
func (s *Store) Watch(ctx context.Context, fn func([]cluster.Node)) error {
	backoff := 200 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// One range over the store's prefix holds everything, read at
		// one revision.
		octx, cancel := s.op(ctx)
		resp, err := s.cli.Get(octx, s.opts.Prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			s.note(fmt.Errorf("list node records in etcd: %w", err))
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		s.note(nil)
		backoff = 200 * time.Millisecond
		v := newView()
		for _, kv := range resp.Kvs {
			s.apply(v, kv, false)
		}
		s.deliver(v, fn)

		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				s.note(fmt.Errorf("watch node records in etcd: %w", err))
				break
			}
			if len(wr.Events) == 0 {
				continue
			}
			for _, ev := range wr.Events {
				s.apply(v, ev.Kv, ev.Type == mvccpb.DELETE)
			}
			s.note(nil)
			s.deliver(v, fn)
		}
		wcancel()
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

func (s *Store) apply(v *view, kv *mvccpb.KeyValue, deleted bool) {
	if err := v.apply(strings.TrimPrefix(string(kv.Key), s.opts.Prefix), kv, deleted); err != nil {
		// A value no agent could have written: peers cannot be routed to
		// it, so it is left out rather than stopping the whole watch.
		s.log.Warn("ignoring a malformed key in etcd", "key", string(kv.Key), "err", err)
	}
}

// deliver brings Conflicts up to date with v and hands fn the records.
func (s *Store) deliver(v *view, fn func([]cluster.Node)) {
	o := v.owners()
	s.mu.Lock()
	var cs []store.Conflict
	for node, sub := range s.subnets {
		cs = append(cs, v.conflicts(o, node, sub, s.records[node].UnderlayIP)...)
	}
	s.conflicts = cs
	s.mu.Unlock()
	fn(v.joined(o))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
