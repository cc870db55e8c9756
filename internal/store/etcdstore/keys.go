package etcdstore

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
)

// DefaultPrefix is the key prefix of everything Weft keeps in etcd unless
// configured otherwise.
const DefaultPrefix = "/weft/"

// The key layout is exported so that tools and tests which read or plant
// records in etcd directly (the lab's benchmarks and end-to-end tests,
// `weft etcd-grant`) use the store's own layout instead of a copy of it.

// NodesPrefix holds one key per node record under prefix.
func NodesPrefix(prefix string) string { return prefix + "nodes/" }

// NodeKey is the key of node's record under prefix; its value is the
// cluster.Node as JSON.
func NodeKey(prefix, node string) string { return NodesPrefix(prefix) + node }

// ClaimsPrefix holds every node's claims under prefix.
func ClaimsPrefix(prefix string) string { return prefix + "claims/" }

// SubnetClaimsPrefix holds one key per node whose value is the one subnet
// it claims: what decides subnet holders, in one range.
func SubnetClaimsPrefix(prefix string) string { return ClaimsPrefix(prefix) + "subnet/" }

// AddressClaimsPrefix holds one key per node whose value is the one
// underlay address it claims.
func AddressClaimsPrefix(prefix string) string { return ClaimsPrefix(prefix) + "address/" }

// SubnetClaimKey is node's subnet claim ("10.244.3.0/24").
func SubnetClaimKey(prefix, node string) string { return SubnetClaimsPrefix(prefix) + node }

// AddressClaimKey is node's underlay address claim ("172.30.0.5").
func AddressClaimKey(prefix, node string) string { return AddressClaimsPrefix(prefix) + node }

// AlivePrefix holds one key per running node.
func AlivePrefix(prefix string) string { return prefix + "alive/" }

// AliveKey exists while node renews its etcd lease: it is the only key on
// that lease.
func AliveKey(prefix, node string) string { return AlivePrefix(prefix) + node }

// LegacySubnetsPrefix holds the subnet leases of agents before claims/
// (one key per subnet, its value the holder's name, on the holder's etcd
// lease). They are read, never written: see the package comment.
func LegacySubnetsPrefix(prefix string) string { return prefix + "subnets/" }

// LegacySubnetKey is the key of subnet p's lease in the layout before
// claims/.
func LegacySubnetKey(prefix string, p netip.Prefix) string {
	return fmt.Sprintf("%s%s-%d", LegacySubnetsPrefix(prefix), p.Addr(), p.Bits())
}

// PlantOps are the writes that make n a node whose record peers route,
// as its own agent would leave them after a lapse: record and claims,
// no alive key. An admin's tool (the lab's benchmarks and tests) plants
// peers with them; with etcd's auth on, only root may write them for
// another node than itself.
func PlantOps(prefix string, n cluster.Node) ([]clientv3.Op, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode node record %s: %w", n.Name, err)
	}
	return []clientv3.Op{
		clientv3.OpPut(SubnetClaimKey(prefix, n.Name), n.Subnet.String()),
		clientv3.OpPut(AddressClaimKey(prefix, n.Name), n.UnderlayIP.String()),
		clientv3.OpPut(NodeKey(prefix, n.Name), string(b)),
	}, nil
}

// RemoveOps delete everything of node under prefix (but a legacy subnet
// key, which only root may delete).
func RemoveOps(prefix, node string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpDelete(NodeKey(prefix, node)),
		clientv3.OpDelete(SubnetClaimKey(prefix, node)),
		clientv3.OpDelete(AddressClaimKey(prefix, node)),
		clientv3.OpDelete(AliveKey(prefix, node)),
	}
}

// key is a key under the store's prefix, parsed: which kind, and whose.
type key struct {
	kind keyKind
	node string
	// subnet is the subnet of a legacy subnets/ key.
	subnet netip.Prefix
}

type keyKind int

const (
	keyOther keyKind = iota
	keyRecord
	keySubnetClaim
	keyAddressClaim
	keyAlive
	keyLegacySubnet
)

// parseKey says what k (with the prefix already removed) is. A key no
// agent writes is keyOther and ignored by readers.
func parseKey(k string) key {
	switch {
	case strings.HasPrefix(k, "nodes/"):
		if n := strings.TrimPrefix(k, "nodes/"); validNodeName(n) == nil {
			return key{kind: keyRecord, node: n}
		}
	case strings.HasPrefix(k, "claims/"):
		what, n, _ := strings.Cut(strings.TrimPrefix(k, "claims/"), "/")
		if validNodeName(n) != nil {
			break
		}
		switch what {
		case "subnet":
			return key{kind: keySubnetClaim, node: n}
		case "address":
			return key{kind: keyAddressClaim, node: n}
		}
	case strings.HasPrefix(k, "alive/"):
		if n := strings.TrimPrefix(k, "alive/"); validNodeName(n) == nil {
			return key{kind: keyAlive, node: n}
		}
	case strings.HasPrefix(k, "subnets/"):
		p, err := netip.ParsePrefix(strings.Replace(strings.TrimPrefix(k, "subnets/"), "-", "/", 1))
		if err == nil {
			return key{kind: keyLegacySubnet, subnet: p}
		}
	}
	return key{kind: keyOther}
}

func (s *Store) nodeKey(node string) string         { return NodeKey(s.opts.Prefix, node) }
func (s *Store) subnetClaimKey(node string) string  { return SubnetClaimKey(s.opts.Prefix, node) }
func (s *Store) addressClaimKey(node string) string { return AddressClaimKey(s.opts.Prefix, node) }
func (s *Store) aliveKey(node string) string        { return AliveKey(s.opts.Prefix, node) }
