package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
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

// Watch lists the node records and the subnet leases, calls fn with the
// records, then follows changes to both from the listed revision, calling
// fn with the full set after each batch. When the watch breaks (etcd
// down, revision compacted, leader lost) it lists again, so that nothing
// that happened meanwhile is missed.
//
// A node writes its own record and may write any subnet in it; what it
// holds is what the subnets/ keys say. Each record is joined with them,
// and one whose subnet is not held by that node is marked (NotHeld), so
// that the datapath gives it no path and the agent can say why.
func (s *Store) Watch(ctx context.Context, fn func([]cluster.Node)) error {
	backoff := 200 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// One range over the store's prefix holds both the records and
		// the leases, read at one revision.
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
		v := view{nodes: map[string]cluster.Node{}, holders: map[netip.Prefix]string{}}
		for _, kv := range resp.Kvs {
			s.apply(v, kv, false)
		}
		fn(v.joined())

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
			fn(v.joined())
		}
		wcancel()
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

// view is what Watch knows: the records by node, the subnet leases'
// holders by subnet.
type view struct {
	nodes   map[string]cluster.Node
	holders map[netip.Prefix]string
}

// joined is the records, sorted by name, each marked when the leases do
// not show its node holding its subnet.
func (v view) joined() []cluster.Node {
	out := sorted(v.nodes)
	for i, n := range out {
		switch holder, ok := v.holders[n.Subnet]; {
		case !ok:
			out[i].NotHeld = "no node holds it in etcd (no subnets/ key)"
		case holder != n.Name:
			out[i].NotHeld = "etcd says node " + holder + " holds it"
		}
	}
	return out
}

func (s *Store) apply(v view, kv *mvccpb.KeyValue, deleted bool) {
	key := string(kv.Key)
	if strings.HasPrefix(key, s.subnetsPrefix()) {
		p, err := s.parseSubnetKey(key)
		switch {
		case err != nil:
			s.log.Warn("ignoring malformed subnet key in etcd", "key", key, "err", err)
		case deleted:
			delete(v.holders, p)
		default:
			v.holders[p] = string(kv.Value)
		}
		return
	}
	if !strings.HasPrefix(key, s.nodesPrefix()) {
		return
	}
	name := strings.TrimPrefix(key, s.nodesPrefix())
	if deleted {
		delete(v.nodes, name)
		return
	}
	var n cluster.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil || n.Name != name {
		// A record no agent could have written: peers cannot be routed to
		// it, so it is left out rather than stopping the whole watch.
		s.log.Warn("ignoring malformed node record in etcd", "key", key, "err", err)
		delete(v.nodes, name)
		return
	}
	v.nodes[name] = n
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
