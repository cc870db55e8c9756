package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Publish writes n as the node's record, on the node's lease when it holds
// one. A record that is already there, on the right lease, is not
// rewritten: every write wakes every peer's watch.
func (s *Store) Publish(ctx context.Context, n cluster.Node) error {
	return s.note(s.publish(ctx, n))
}

func (s *Store) publish(ctx context.Context, n cluster.Node) error {
	if err := validNodeName(n.Name); err != nil {
		return err
	}
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node record %s: %w", n.Name, err)
	}
	s.mu.Lock()
	id := s.leases[n.Name]
	s.records[n.Name] = n
	s.mu.Unlock()

	key := s.nodeKey(n.Name)
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, key)
	if err != nil {
		return fmt.Errorf("read node record %s from etcd: %w", n.Name, err)
	}
	if len(resp.Kvs) == 1 && bytes.Equal(resp.Kvs[0].Value, b) && clientv3.LeaseID(resp.Kvs[0].Lease) == id {
		return nil
	}
	var opts []clientv3.OpOption
	if id != 0 {
		opts = append(opts, clientv3.WithLease(id))
	}
	if _, err := s.cli.Put(octx, key, string(b), opts...); err != nil {
		return fmt.Errorf("publish node record %s to etcd: %w", n.Name, err)
	}
	return nil
}

// Remove deletes the node's record and its subnet lease: the node leaves
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
	resp, err := s.cli.Get(octx, s.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list subnet leases in etcd: %w", err)
	}
	ops := []clientv3.Op{clientv3.OpDelete(s.nodeKey(node))}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == node {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	if _, err := s.cli.Txn(octx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("remove node %s from etcd: %w", node, err)
	}
	s.mu.Lock()
	id := s.leases[node]
	delete(s.leases, node)
	delete(s.subnets, node)
	delete(s.records, node)
	s.mu.Unlock()
	if id != 0 {
		s.revoke(ctx, id)
	}
	return nil
}

// Watch lists the node records, calls fn with them, then follows changes
// from the listed revision, calling fn with the full set after each batch.
// When the watch breaks (etcd down, revision compacted, leader lost) it
// lists again, so that nothing that happened meanwhile is missed.
func (s *Store) Watch(ctx context.Context, fn func([]cluster.Node)) error {
	backoff := 200 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		octx, cancel := s.op(ctx)
		resp, err := s.cli.Get(octx, s.nodesPrefix(), clientv3.WithPrefix())
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
		nodes := map[string]cluster.Node{}
		for _, kv := range resp.Kvs {
			s.apply(nodes, kv, false)
		}
		fn(sorted(nodes))

		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				s.note(fmt.Errorf("watch node records in etcd: %w", err))
				break
			}
			if len(wr.Events) == 0 {
				continue
			}
			for _, ev := range wr.Events {
				s.apply(nodes, ev.Kv, ev.Type == mvccpb.DELETE)
			}
			s.note(nil)
			fn(sorted(nodes))
		}
		wcancel()
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

func (s *Store) apply(nodes map[string]cluster.Node, kv *mvccpb.KeyValue, deleted bool) {
	name := strings.TrimPrefix(string(kv.Key), s.nodesPrefix())
	if deleted {
		delete(nodes, name)
		return
	}
	var n cluster.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil || n.Name != name {
		// A record no agent could have written: peers cannot be routed to
		// it, so it is left out rather than stopping the whole watch.
		s.log.Warn("ignoring malformed node record in etcd", "key", string(kv.Key), "err", err)
		delete(nodes, name)
		return
	}
	nodes[name] = n
}

func sorted(m map[string]cluster.Node) []cluster.Node {
	out := make([]cluster.Node, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
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
