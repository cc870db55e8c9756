package etcdstore

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultPrefix is the key prefix of everything Weft keeps in etcd unless
// configured otherwise.
const DefaultPrefix = "/weft/"

// The key layout is exported so that tools and tests which read or plant
// records in etcd directly (the lab's benchmarks and end-to-end tests)
// use the store's own layout instead of a copy of it.

// SubnetsPrefix holds one key per leased subnet under prefix.
func SubnetsPrefix(prefix string) string { return prefix + "subnets/" }

// NodesPrefix holds one key per node record under prefix.
func NodesPrefix(prefix string) string { return prefix + "nodes/" }

// SubnetKey is the key of subnet p's lease under prefix; its value is the
// holder's node name.
func SubnetKey(prefix string, p netip.Prefix) string {
	return fmt.Sprintf("%s%s-%d", SubnetsPrefix(prefix), p.Addr(), p.Bits())
}

// NodeKey is the key of node's record under prefix; its value is the
// cluster.Node as JSON.
func NodeKey(prefix, node string) string { return NodesPrefix(prefix) + node }

func (s *Store) subnetsPrefix() string { return SubnetsPrefix(s.opts.Prefix) }
func (s *Store) nodesPrefix() string   { return NodesPrefix(s.opts.Prefix) }

func (s *Store) subnetKey(p netip.Prefix) string { return SubnetKey(s.opts.Prefix, p) }

func (s *Store) nodeKey(node string) string { return NodeKey(s.opts.Prefix, node) }

// parseSubnetKey is subnetKey's inverse.
func (s *Store) parseSubnetKey(key string) (netip.Prefix, error) {
	return netip.ParsePrefix(strings.Replace(strings.TrimPrefix(key, s.subnetsPrefix()), "-", "/", 1))
}
