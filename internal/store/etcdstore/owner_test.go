package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdpki"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// These tests run etcd as production should: TLS, a client certificate
// per node (CN = node name), auth on, each node's role made by GrantNode.
// The attacker holds n2's certificate and key and does with them whatever
// etcd lets it; n1 is the victim, n3 a peer that must not be fooled.

// secureNode is one node's store on a secure etcd, with its credentials.
type secureNode struct {
	name  string
	creds etcdpki.Files
	s     *etcdstore.Store
	lease store.Lease
	rec   cluster.Node
}

// join grants name its role, opens its store with its own certificate,
// acquires its lease and publishes its record at underlay address ip.
func join(t *testing.T, srv *etcdtest.Secure, prefix, cidr, name, ip string) *secureNode {
	t.Helper()
	n := &secureNode{name: name, creds: srv.Node(t, prefix, name)}
	n.s = openWith(t, srv, prefix, cidr, n.creds)
	n.lease = acquire(t, n.s, name)
	n.rec = record(n.lease, ip)
	if err := n.s.Publish(context.Background(), n.rec); err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	return n
}

func openWith(t *testing.T, srv *etcdtest.Secure, prefix, cidr string, f etcdpki.Files) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints: []string{srv.URL()}, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key,
		Prefix: prefix, ClusterCIDR: netip.MustParsePrefix(cidr), SubnetLen: 24,
		TTL: 10 * time.Second, OpTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// marks is the NotHeld mark of each record in a snapshot.
func marks(ns []cluster.Node) map[string]string {
	m := map[string]string{}
	for _, n := range ns {
		m[n.Name] = n.NotHeld
	}
	return m
}

// routable says whether the snapshot gives name's record, as published
// (rec), a path: present, unmarked, unchanged.
func routable(ns []cluster.Node, rec cluster.Node) bool {
	for _, n := range ns {
		if n.Name == rec.Name {
			return n == rec
		}
	}
	return false
}

func denied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s with n2's credentials: %v, want permission denied", what, err)
	}
}

// With its own credentials a node can write its own keys and none of
// another node's: etcd refuses every write that would change n1's record,
// claims or liveness.
func TestNodeCredentialsWriteOnlyTheNodesOwnKeys(t *testing.T) {
	srv := etcdtest.StartSecure(t)
	prefix, cidr := uniquePrefix(), "10.244.0.0/16"
	n1 := join(t, srv, prefix, cidr, "n1", "172.30.0.1")
	n2 := join(t, srv, prefix, cidr, "n2", "172.30.0.2")
	ctx := context.Background()
	thief := srv.Client(t, n2.creds)

	forged := n1.rec
	forged.UnderlayIP = netip.MustParseAddr("172.30.0.2")
	b, _ := json.Marshal(forged)
	_, err := thief.Put(ctx, etcdstore.NodeKey(prefix, "n1"), string(b))
	denied(t, "rewrite n1's record", err)
	_, err = thief.Delete(ctx, etcdstore.NodeKey(prefix, "n1"))
	denied(t, "delete n1's record", err)
	_, err = thief.Put(ctx, etcdstore.SubnetClaimKey(prefix, "n1"), "10.244.200.0/24")
	denied(t, "move n1's subnet claim", err)
	_, err = thief.Delete(ctx, etcdstore.AddressClaimKey(prefix, "n1"))
	denied(t, "delete n1's address claim", err)
	_, err = thief.Delete(ctx, etcdstore.ClaimsPrefix(prefix), clientv3.WithPrefix())
	denied(t, "delete every claim", err)
	_, err = thief.Delete(ctx, etcdstore.AliveKey(prefix, "n1"))
	denied(t, "delete n1's alive key", err)
	_, err = thief.Put(ctx, etcdstore.LegacySubnetKey(prefix, n1.lease.Subnet), "n2")
	denied(t, "write an old-layout subnet lease", err)
	_, err = thief.Put(ctx, etcdstore.NodeKey(prefix, "n9"), string(b))
	denied(t, "publish a record for a node of another name", err)

	alive, err := thief.Get(ctx, etcdstore.AliveKey(prefix, "n1"))
	if err != nil || len(alive.Kvs) != 1 {
		t.Fatalf("n2 cannot read n1's alive key: %v", err)
	}
	lease := clientv3.LeaseID(alive.Kvs[0].Lease)
	_, err = thief.Revoke(ctx, lease)
	denied(t, "revoke n1's etcd lease", err)
	_, err = thief.Put(ctx, etcdstore.AliveKey(prefix, "n2"), "", clientv3.WithLease(lease))
	denied(t, "put its own key on n1's etcd lease", err)

	// Nor can it make itself look like an agent of the old layout again
	// (its record on the lease of a subnets/ key naming it, left from
	// before etcd's auth was on): that lease holds a key it may not write.
	root := srv.Client(t, srv.Root)
	g, err := root.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx, etcdstore.LegacySubnetKey(prefix, netip.MustParsePrefix("10.244.250.0/24")), "n2", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = thief.Put(ctx, etcdstore.NodeKey(prefix, "n2"), string(b), clientv3.WithLease(g.ID))
	denied(t, "put its record on its old-layout lease", err)

	// Its own keys it writes, and it reads everyone's.
	if _, err := thief.Put(ctx, etcdstore.SubnetClaimKey(prefix, "n2"), n2.lease.Subnet.String()); err != nil {
		t.Errorf("n2 cannot write its own claim: %v", err)
	}
	if _, err := thief.Get(ctx, prefix, clientv3.WithPrefix()); err != nil {
		t.Errorf("n2 cannot read Weft's keys: %v", err)
	}
}

// n2 claims n1's subnet and publishes a record for it; then it claims and
// publishes n1's underlay address. Peers route neither: n1's record keeps
// its path, n2's is marked. n1 keeps its lease and reports each bid.
func TestStolenCredentialsCannotTakeARunningNodesSubnetOrAddress(t *testing.T) {
	srv := etcdtest.StartSecure(t)
	prefix, cidr := uniquePrefix(), "10.244.0.0/16"
	n1 := join(t, srv, prefix, cidr, "n1", "172.30.0.1")
	n2 := join(t, srv, prefix, cidr, "n2", "172.30.0.2")
	n3 := join(t, srv, prefix, cidr, "n3", "172.30.0.3")
	ctx := context.Background()
	victim, peer := watch(t, n1.s), watch(t, n3.s)
	peer.waitFor(t, "three routable records", func(ns []cluster.Node) bool {
		return routable(ns, n1.rec) && routable(ns, n2.rec) && routable(ns, n3.rec)
	})
	thief := srv.Client(t, n2.creds)

	// The subnet.
	forged := n2.rec
	forged.Subnet = n1.lease.Subnet
	plant(t, thief, prefix, forged)
	for _, w := range []*watcher{peer, victim} {
		w.waitFor(t, "n1 routable, n2's record for n1's subnet marked", func(ns []cluster.Node) bool {
			m := marks(ns)
			return routable(ns, n1.rec) && strings.Contains(m["n2"], "is node n1's")
		})
	}
	waitConflict(t, n1.s, store.ConflictSubnet, "n2", n1.lease.Subnet.String())
	if l, err := n1.s.RenewLease(ctx, n1.lease); err != nil || l.Subnet != n1.lease.Subnet {
		t.Fatalf("n1's renewal after n2's claim: %+v, %v; want its subnet %s", l, err, n1.lease.Subnet)
	}
	// The underlay address (with the VTEP MAC it derives), on n2's own
	// subnet again.
	forged = n2.rec
	forged.UnderlayIP, forged.VTEPMAC = n1.rec.UnderlayIP, n1.rec.VTEPMAC
	plant(t, thief, prefix, forged)
	for _, w := range []*watcher{peer, victim} {
		w.waitFor(t, "n1 routable, n2's record with n1's address marked", func(ns []cluster.Node) bool {
			m := marks(ns)
			return routable(ns, n1.rec) && strings.Contains(m["n2"], "underlay address 172.30.0.1 is node n1's") &&
				!strings.Contains(m["n2"], "subnet")
		})
	}
	waitConflict(t, n1.s, store.ConflictAddress, "n2", "172.30.0.1")
	if _, err := n1.s.RenewLease(ctx, n1.lease); err != nil {
		t.Fatalf("n1's renewal after n2's address claim: %v", err)
	}
	// A newcomer asking for n1's subnet does not get it either.
	n4 := openWith(t, srv, prefix, cidr, srv.Node(t, prefix, "n4"))
	if l, err := n4.AcquireLease(ctx, "n4", n1.lease.Subnet); err != nil || l.Subnet == n1.lease.Subnet {
		t.Fatalf("n4 asked for n1's subnet: %+v, %v", l, err)
	}
}

// plant writes rec as n's record and claims with its own credentials.
func plant(t *testing.T, cli *clientv3.Client, prefix string, rec cluster.Node) {
	t.Helper()
	ops, err := etcdstore.PlantOps(prefix, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatalf("%s writes its own keys: %v", rec.Name, err)
	}
}

// waitConflict waits until s reports a conflict of kind with node over
// what.
func waitConflict(t *testing.T, s *etcdstore.Store, kind, node, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range s.Conflicts() {
			if c.Kind == kind && c.Node == node && c.What == what {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s conflict with %s over %s reported; have %+v", kind, node, what, s.Conflicts())
}

// A node whose agent is down past its lease keeps its record routed, and
// its subnet, until another node claims the subnet (which it does only
// when no unclaimed subnet is left). Back after that, it has lost it.
func TestLapsedNodeKeepsItsRoutesUntilAnotherClaimsItsSubnet(t *testing.T) {
	srv := etcdtest.StartSecure(t)
	prefix, cidr := uniquePrefix(), "10.244.0.0/23" // two /24s
	n1 := join(t, srv, prefix, cidr, "n1", "172.30.0.1")
	n2 := join(t, srv, prefix, cidr, "n2", "172.30.0.2")
	ctx := context.Background()
	peer := watch(t, n2.s)
	peer.waitFor(t, "n1 routed", func(ns []cluster.Node) bool { return routable(ns, n1.rec) })
	seen := peer.snapshots()
	lapseWith(t, srv.Client(t, srv.Root), prefix, "n1")
	// The snapshot after the one that saw n1 running: its alive key gone.
	peer.waitFor(t, "n1 routed after its lease lapsed", func(ns []cluster.Node) bool {
		return peer.snapshots() > seen && routable(ns, n1.rec)
	})

	n3 := join(t, srv, prefix, cidr, "n3", "172.30.0.3")
	if n3.lease.Subnet != n1.lease.Subnet {
		t.Fatalf("n3 got %s; the only subnet left is lapsed n1's %s", n3.lease.Subnet, n1.lease.Subnet)
	}
	peer.waitFor(t, "n3 routed for n1's old subnet, n1 no more", func(ns []cluster.Node) bool {
		return routable(ns, n3.rec) && strings.Contains(marks(ns)["n1"], "is node n3's")
	})

	// n1's agent comes back: its renewal says the subnet is lost, a new
	// acquisition finds nothing left, and n3 keeps the subnet.
	if _, err := n1.s.RenewLease(ctx, n1.lease); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("n1's renewal after n3 claimed its subnet: %v, want ErrLeaseLost", err)
	}
	again := openWith(t, srv, prefix, cidr, n1.creds)
	if l, err := again.AcquireLease(ctx, "n1", n1.lease.Subnet); !errors.Is(err, store.ErrCIDRExhausted) {
		t.Fatalf("n1 restarted, asking for its old subnet: %+v, %v; want ErrCIDRExhausted", l, err)
	}
	if err := n1.s.Publish(ctx, n1.rec); err != nil {
		t.Fatal(err)
	}
	peer.waitFor(t, "n3 still routed", func(ns []cluster.Node) bool {
		return routable(ns, n3.rec) && marks(ns)["n1"] != ""
	})
}

// An agent given another node's certificate, or the administrator's,
// would act as that user: with auth on it refuses to start. A node whose
// role was never made is told how to make it.
func TestAgentRefusesCredentialsOfAnotherIdentity(t *testing.T) {
	srv := etcdtest.StartSecure(t)
	prefix, cidr := uniquePrefix(), "10.244.0.0/16"
	ctx := context.Background()
	n2 := srv.Node(t, prefix, "n2")
	for _, tc := range []struct {
		creds etcdpki.Files
		want  string
	}{
		{n2, `common name is "n2", not this node's name "n1"`},
		{srv.Root, `common name is "root"`},
	} {
		_, err := openWith(t, srv, prefix, cidr, tc.creds).AcquireLease(ctx, "n1", netip.Prefix{})
		if !errors.Is(err, store.ErrCredentials) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("acquire as n1 with %s: %v; want ErrCredentials saying %q", tc.creds.Cert, err, tc.want)
		}
	}
	ungranted, err := srv.PKI.Client("n5")
	if err != nil {
		t.Fatal(err)
	}
	_, err = openWith(t, srv, prefix, cidr, ungranted).AcquireLease(ctx, "n5", netip.Prefix{})
	if err == nil || !strings.Contains(err.Error(), "weft etcd-grant --node n5") {
		t.Errorf("acquire as n5 without a role: %v; want a hint at weft etcd-grant", err)
	}
}

// Agents of the old layout (one subnets/ key per subnet on the holder's
// etcd lease, the record on it too): a new agent of such a node takes its
// old subnet back and keeps its old lease alive for the old agents, a new
// node takes none an old agent holds, and the old agent's record stays
// routable.
func TestUpgradeKeepsTheSubnetsOfTheOldLayout(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	cli := rawClient(t, srv)
	oldAgent := func(node, subnet, ip string) (cluster.Node, clientv3.LeaseID) {
		g, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		rec := cluster.Node{Name: node, UnderlayIP: netip.MustParseAddr(ip), Subnet: netip.MustParsePrefix(subnet), Backend: cluster.BackendAuto}
		b, _ := json.Marshal(rec)
		_, err = cli.Txn(ctx).Then(
			clientv3.OpPut(etcdstore.LegacySubnetKey(prefix, rec.Subnet), node, clientv3.WithLease(g.ID)),
			clientv3.OpPut(etcdstore.NodeKey(prefix, node), string(b), clientv3.WithLease(g.ID)),
		).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return rec, g.ID
	}
	old, _ := oldAgent("node-old", "10.244.0.0/24", "172.30.0.9")
	_, aLease := oldAgent("node-a", "10.244.5.0/24", "172.30.0.1")
	ttl := func() int64 {
		r, err := cli.TimeToLive(ctx, aLease)
		if err != nil {
			t.Fatal(err)
		}
		return r.TTL
	}
	// Let node-a's old lease run down a little, so that a renewal shows.
	for deadline := time.Now().Add(10 * time.Second); ttl() > 57; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the old lease's TTL does not go down")
		}
	}

	a := open(t, srv, prefix, "10.244.0.0/16", 24)
	la := acquire(t, a, "node-a")
	if la.Subnet != netip.MustParsePrefix("10.244.5.0/24") {
		t.Fatalf("upgraded node-a got %s, held 10.244.5.0/24 before", la.Subnet)
	}
	if got := ttl(); got < 59 {
		t.Errorf("node-a's old lease was not renewed while node-old runs the old layout: TTL %ds", got)
	}
	ra := record(la, "172.30.0.1")
	if err := a.Publish(ctx, ra); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, etcdstore.NodeKey(prefix, "node-a"))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 0 {
		t.Fatalf("node-a's record is still on its old etcd lease: %v %+v", err, resp)
	}
	if lc := acquire(t, open(t, srv, prefix, "10.244.0.0/16", 24), "node-c"); lc.Subnet == old.Subnet || lc.Subnet == la.Subnet {
		t.Fatalf("new node-c got %s, held by an agent", lc.Subnet)
	}
	watch(t, a).waitFor(t, "the old agent's and node-a's records routable", func(ns []cluster.Node) bool {
		return routable(ns, old) && routable(ns, ra)
	})
}
