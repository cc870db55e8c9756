package etcdstore

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// view is what a reader knows of Weft's keys, and the ownership decided
// from it (see the package comment): every fact it uses is a revision
// etcd stamped, which no node can choose.
type view struct {
	nodes map[string]*nodeKeys
	// legacy is the subnets/ keys of agents before claims/.
	legacy map[netip.Prefix]legacyLease
}

// nodeKeys is one node's keys.
type nodeKeys struct {
	record *cluster.Node // nil when absent or malformed
	// recordRev is when the record was last written (ModRevision);
	// recordLease the etcd lease it is on (only agents of the old layout
	// put it on one).
	recordRev, recordLease int64
	subnet                 *claim[netip.Prefix]
	address                *claim[netip.Addr]
	// alive is the CreateRevision of the node's alive key: since when it
	// has run without a lapse; 0 while it has none. aliveLease is the etcd
	// lease the key is on.
	alive, aliveLease int64
}

// claim is the value of a claim key and the revision that last wrote it:
// since when the node has claimed that value.
type claim[T comparable] struct {
	v     T
	since int64
}

type legacyLease struct {
	node  string
	rev   int64 // CreateRevision
	lease int64
}

func newView() *view {
	return &view{nodes: map[string]*nodeKeys{}, legacy: map[netip.Prefix]legacyLease{}}
}

func (v *view) node(name string) *nodeKeys {
	n := v.nodes[name]
	if n == nil {
		n = &nodeKeys{}
		v.nodes[name] = n
	}
	return n
}

// apply folds one key (its name without the prefix) into the view. A
// value no agent could have written is dropped, as if the key were not
// there, rather than stopping the reader; the returned error says why.
func (v *view) apply(k string, kv *mvccpb.KeyValue, deleted bool) error {
	pk := parseKey(k)
	if pk.kind == keyLegacySubnet {
		if deleted {
			delete(v.legacy, pk.subnet)
		} else {
			v.legacy[pk.subnet] = legacyLease{node: string(kv.Value), rev: kv.CreateRevision, lease: kv.Lease}
		}
		return nil
	}
	if pk.kind == keyOther {
		return nil
	}
	n := v.node(pk.node)
	defer v.dropEmpty(pk.node)
	var err error
	switch pk.kind {
	case keyRecord:
		n.record, n.recordRev, n.recordLease = nil, 0, 0
		if !deleted {
			var rec cluster.Node
			if err = json.Unmarshal(kv.Value, &rec); err == nil && rec.Name != pk.node {
				err = fmt.Errorf("record names node %q", rec.Name)
			}
			if err == nil {
				rec.NotHeld = ""
				n.record, n.recordRev, n.recordLease = &rec, kv.ModRevision, kv.Lease
			}
		}
	case keySubnetClaim:
		n.subnet = nil
		if !deleted {
			var p netip.Prefix
			if p, err = netip.ParsePrefix(string(kv.Value)); err == nil {
				n.subnet = &claim[netip.Prefix]{v: p, since: kv.ModRevision}
			}
		}
	case keyAddressClaim:
		n.address = nil
		if !deleted {
			var a netip.Addr
			if a, err = netip.ParseAddr(string(kv.Value)); err == nil {
				n.address = &claim[netip.Addr]{v: a, since: kv.ModRevision}
			}
		}
	case keyAlive:
		n.alive, n.aliveLease = 0, 0
		if !deleted {
			n.alive, n.aliveLease = kv.CreateRevision, kv.Lease
		}
	}
	return err
}

func (v *view) dropEmpty(name string) {
	if n := v.nodes[name]; n != nil && n.record == nil && n.subnet == nil && n.address == nil && n.alive == 0 {
		delete(v.nodes, name)
	}
}

// legacyNodes are the agents of the old layout, each with its oldest
// subnets/ key: nodes whose record is on the same etcd lease as a
// subnets/ key naming them, as only an old agent leaves it. A node's own
// role cannot make that state again (etcd refuses to attach a key to a
// lease that holds a key the role may not write), so a node with stolen
// credentials cannot fall back on an old subnets/ key it keeps alive.
func (v *view) legacyNodes() map[string]legacyLease {
	out := map[string]legacyLease{}
	for _, l := range v.legacy {
		if !v.oldAgent(l) {
			continue
		}
		if old, ok := out[l.node]; !ok || l.rev < old.rev {
			out[l.node] = l
		}
	}
	return out
}

// oldAgent reports whether the subnets/ key l is an old agent's lease.
func (v *view) oldAgent(l legacyLease) bool {
	n := v.nodes[l.node]
	return n != nil && n.subnet == nil && n.record != nil && l.lease != 0 && n.recordLease == l.lease
}

// contender is one node's bid for a subnet or an address.
type contender struct {
	node string
	// since is when it claimed; eff when its claim took effect: since, or
	// when the node came back from its last lapse if that is later.
	since, eff int64
	live       bool
}

// before orders contenders: the holder comes first. A running node wins
// over a lapsed one; between running ones the earlier effective claim,
// between lapsed ones the earlier claim. A node that lapsed and came back
// after another claimed its subnet therefore loses it, and a claim on a
// subnet a running node held first never wins while that node runs.
func (c contender) before(d contender) bool {
	if c.live != d.live {
		return c.live
	}
	a, b := c.since, d.since
	if c.live {
		a, b = c.eff, d.eff
	}
	if a != b {
		return a < b
	}
	return c.node < d.node
}

func (n *nodeKeys) contender(name string, since int64) contender {
	return contender{node: name, since: since, eff: max(since, n.alive), live: n.alive != 0}
}

// owners is who holds each subnet and each underlay address.
type owners struct {
	subnets   map[netip.Prefix]contender
	addresses map[netip.Addr]contender
}

func bid[K comparable](m map[K]contender, k K, c contender) {
	if h, ok := m[k]; !ok || c.before(h) {
		m[k] = c
	}
}

// owners decides every holder at once: once per snapshot, for every
// record and every conflict.
func (v *view) owners() owners {
	o := owners{subnets: make(map[netip.Prefix]contender, len(v.nodes)+len(v.legacy)), addresses: make(map[netip.Addr]contender, len(v.nodes))}
	for name, n := range v.nodes {
		if n.subnet != nil {
			bid(o.subnets, n.subnet.v, n.contender(name, n.subnet.since))
		}
		if n.address != nil {
			bid(o.addresses, n.address.v, n.contender(name, n.address.since))
		}
	}
	// An agent of the old layout holds its subnet while its lease lives
	// (it is running), since the lease key was made; its address since
	// its record was last written (it claims none).
	for p, l := range v.legacy {
		if v.oldAgent(l) {
			bid(o.subnets, p, contender{node: l.node, since: l.rev, eff: l.rev, live: true})
		}
	}
	for name := range v.legacyNodes() {
		if n := v.nodes[name]; n != nil && n.record != nil && n.address == nil {
			bid(o.addresses, n.record.UnderlayIP, contender{node: name, since: n.recordRev, eff: n.recordRev, live: true})
		}
	}
	return o
}

// addressOf is the underlay address node claims, and since when: its
// address claim, or for an agent of the old layout the address in its
// record.
func (v *view) addressOf(name string, legacy map[string]legacyLease) (netip.Addr, bool) {
	n := v.nodes[name]
	switch {
	case n == nil:
		return netip.Addr{}, false
	case n.address != nil:
		return n.address.v, true
	case n.record != nil:
		if _, old := legacy[name]; old {
			return n.record.UnderlayIP, true
		}
	}
	return netip.Addr{}, false
}

// claimedSubnets is every subnet someone claims: a node of the current
// layout, or a subnets/ key (an old agent's, perhaps before its record is
// there).
func (v *view) claimedSubnets() map[netip.Prefix]bool {
	m := make(map[netip.Prefix]bool, len(v.nodes)+len(v.legacy))
	for _, n := range v.nodes {
		if n.subnet != nil {
			m[n.subnet.v] = true
		}
	}
	for p := range v.legacy {
		m[p] = true
	}
	return m
}

// joined is the records, sorted by name, each marked (NotHeld) unless its
// node holds both the subnet and the underlay address it names in o.
func (v *view) joined(o owners) []cluster.Node {
	legacy := v.legacyNodes()
	out := make([]cluster.Node, 0, len(v.nodes))
	for name, n := range v.nodes {
		if n.record == nil {
			continue
		}
		r := *n.record
		r.NotHeld = v.notHeld(name, r, o, legacy)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b cluster.Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// notHeld says why node name does not hold what its record r names, or
// "" when it holds both its subnet and its underlay address.
func (v *view) notHeld(name string, r cluster.Node, o owners, legacy map[string]legacyLease) string {
	var why []string
	switch h, ok := o.subnets[r.Subnet]; {
	case !ok:
		why = append(why, fmt.Sprintf("subnet %s: no node claims it in etcd", r.Subnet))
	case h.node != name:
		why = append(why, fmt.Sprintf("subnet %s is node %s's (%s)", r.Subnet, h.node, h.describe()))
	}
	switch a, ok := v.addressOf(name, legacy); {
	case !ok:
		why = append(why, fmt.Sprintf("underlay address %s: the node claims none in etcd", r.UnderlayIP))
	case a != r.UnderlayIP:
		why = append(why, fmt.Sprintf("underlay address %s: the node claims %s in etcd", r.UnderlayIP, a))
	default:
		if h := o.addresses[a]; h.node != name {
			why = append(why, fmt.Sprintf("underlay address %s is node %s's (%s)", a, h.node, h.describe()))
		}
	}
	return strings.Join(why, "; ")
}

func (c contender) describe() string {
	if c.live {
		return fmt.Sprintf("claimed at revision %d, running since %d", c.since, c.eff)
	}
	return fmt.Sprintf("claimed at revision %d, not running", c.since)
}

// conflicts lists what other nodes claim or publish of what node self
// holds, in the view with owners o: its subnet sub and its underlay address addr (each
// invalid when self holds none yet). Only bids made after self's own
// claim count: an older one is what a previous holder left behind.
func (v *view) conflicts(o owners, self string, sub netip.Prefix, addr netip.Addr) []store.Conflict {
	me := v.nodes[self]
	if me == nil {
		return nil
	}
	var out []store.Conflict
	add := func(kind, node, what, detail string) {
		out = append(out, store.Conflict{Kind: kind, Node: node, What: what, Detail: detail})
	}
	if sub.IsValid() && me.subnet != nil && me.subnet.v == sub {
		mine := me.subnet.since
		if h, ok := o.subnets[sub]; ok && h.node != self {
			add(store.ConflictSubnet, h.node, sub.String(), fmt.Sprintf("node %s holds this node's subnet %s now (%s)", h.node, sub, h.describe()))
		}
		for name, n := range v.nodes {
			if name == self {
				continue
			}
			if n.subnet != nil && n.subnet.v == sub && n.subnet.since > mine {
				add(store.ConflictSubnet, name, sub.String(), fmt.Sprintf("node %s claims this node's subnet %s (at revision %d; this node's claim is from %d)", name, sub, n.subnet.since, mine))
			}
			if n.record != nil && n.record.Subnet == sub && n.recordRev > mine {
				add(store.ConflictSubnet, name, sub.String(), fmt.Sprintf("node %s publishes a record for this node's subnet %s (at revision %d)", name, sub, n.recordRev))
			}
		}
		for p, l := range v.legacy {
			if p == sub && l.node != self && l.rev > mine {
				add(store.ConflictSubnet, l.node, sub.String(), fmt.Sprintf("a subnets/ key gives this node's subnet %s to node %s (at revision %d)", sub, l.node, l.rev))
			}
		}
	}
	if addr.IsValid() && me.address != nil && me.address.v == addr {
		mine := me.address.since
		if h, ok := o.addresses[addr]; ok && h.node != self {
			add(store.ConflictAddress, h.node, addr.String(), fmt.Sprintf("node %s holds this node's underlay address %s (%s): peers refuse this node's record", h.node, addr, h.describe()))
		}
		for name, n := range v.nodes {
			if name == self {
				continue
			}
			if n.address != nil && n.address.v == addr && n.address.since > mine {
				add(store.ConflictAddress, name, addr.String(), fmt.Sprintf("node %s claims this node's underlay address %s (at revision %d; this node's claim is from %d)", name, addr, n.address.since, mine))
			}
			if n.record != nil && n.record.UnderlayIP == addr && n.recordRev > mine {
				add(store.ConflictAddress, name, addr.String(), fmt.Sprintf("node %s publishes a record with this node's underlay address %s (at revision %d)", name, addr, n.recordRev))
			}
		}
	}
	slices.SortFunc(out, func(a, b store.Conflict) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Detail, b.Detail))
	})
	return out
}
