package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// Someone holds node n2's etcd certificate and key (as they are on n2's
// disk) and uses them from n2's namespace, through the lab's etcd (TLS,
// client certificates, auth on), against n1. etcd refuses every write to
// n1's keys; n2's claim on n1's subnet, and then on n1's underlay address,
// gets no path on any node: n1 keeps its routes, VXLAN entries and pod
// traffic, and its agent says Degraded and counts the bids without
// stopping.
func TestLabStolenNodeCredentials(t *testing.T) {
	cfg := labtest.Config(t, "wtown")
	cfg.Backend, cfg.Nodes, cfg.PodsPerNode = cluster.BackendVXLAN, 3, 1
	l := labtest.Up(t, cfg)
	n1, n3 := mustNode(t, l, "n1"), mustNode(t, l, "n3")
	fullMatrix(t, l)
	want := entriesFor(t, l, "n3", n1)
	if len(want) != 3 {
		t.Fatalf("n3 holds %d route/neighbour/FDB entries for n1 before the attack, want 3:\n%s", len(want), strings.Join(want, "\n"))
	}

	// The attacker's own agent is out of the way; n2 still counts as
	// running (its etcd lease lives on).
	if err := l.StopAgent("n2", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cli, err := l.EtcdClientAs("n2")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()

	for what, op := range map[string]clientv3.Op{
		"rewrite n1's record":      clientv3.OpPut(etcdstore.NodeKey(etcdstore.DefaultPrefix, "n1"), "{}"),
		"move n1's subnet claim":   clientv3.OpPut(etcdstore.SubnetClaimKey(etcdstore.DefaultPrefix, "n1"), "10.244.99.0/24"),
		"delete n1's alive key":    clientv3.OpDelete(etcdstore.AliveKey(etcdstore.DefaultPrefix, "n1")),
		"write an old subnets/key": clientv3.OpPut(etcdstore.LegacySubnetKey(etcdstore.DefaultPrefix, n1.Subnet), "n2"),
	} {
		if _, err := cli.Do(ctx, op); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("%s with n2's credentials: %v, want permission denied", what, err)
		}
	}

	own := readRecord(t, cli, "n2")
	t.Run("subnet", func(t *testing.T) {
		forged := own
		forged.Subnet = n1.Subnet
		plantAs(t, cli, forged)
		refusedBy(t, l, "n3", "n2", datapath.RefusedNotHeld)
		refusedBy(t, l, "n1", "n2", datapath.RefusedProtected)
		stillReaches(t, l, n1, n3, want)
		defends(t, l, "n1", "subnet", "node n2 claims this node's subnet "+n1.Subnet.String())
	})
	t.Run("underlay-address", func(t *testing.T) {
		forged := own
		forged.UnderlayIP, forged.VTEPMAC = n1.UnderlayIP, datapath.VTEPMAC(n1.UnderlayIP).String()
		plantAs(t, cli, forged)
		refusedBy(t, l, "n3", "n2", datapath.RefusedNotHeld)
		stillReaches(t, l, n1, n3, want)
		defends(t, l, "n1", "address", "node n2 claims this node's underlay address "+n1.UnderlayIP.String())
	})
	if alive, err := l.AgentAlive("n1"); !alive {
		t.Fatalf("n1's agent stopped under attack: %v", err)
	}
}

func mustNode(t *testing.T, l *lab.Lab, name string) *lab.NodeState {
	t.Helper()
	n, err := l.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// entriesFor is node's route, neighbour and FDB entries for peer.
func entriesFor(t *testing.T, l *lab.Lab, node string, peer *lab.NodeState) []string {
	t.Helper()
	var out []string
	for _, line := range labtest.Kernel(t, l, node).Mentioning(peer.Subnet.String(), vxlanAddr(peer.Subnet), peer.UnderlayIP.String()) {
		for _, kind := range []string{"route ", "neigh ", "fdb "} {
			if strings.HasPrefix(line, kind) {
				out = append(out, line)
			}
		}
	}
	return out
}

func readRecord(t *testing.T, cli *clientv3.Client, node string) cluster.Node {
	t.Helper()
	resp, err := cli.Get(context.Background(), etcdstore.NodeKey(etcdstore.DefaultPrefix, node))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read %s's record: %v", node, err)
	}
	var n cluster.Node
	if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// plantAs writes rec and its claims with the attacker's client: its own
// keys, which etcd lets it write.
func plantAs(t *testing.T, cli *clientv3.Client, rec cluster.Node) {
	t.Helper()
	ops, err := etcdstore.PlantOps(etcdstore.DefaultPrefix, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatalf("n2 writes its own record and claims: %v", err)
	}
}

// refusedBy waits until node's agent refuses peer's record for reason.
func refusedBy(t *testing.T, l *lab.Lab, node, peer, reason string) {
	t.Helper()
	c := agentapi.NewClient(mustNode(t, l, node).RunDir())
	testnet.Eventually(t, 20*time.Second, node+" refuses "+peer+"'s record", func() error {
		ps, err := c.Peers(context.Background())
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == peer {
				if p.Refused != reason {
					return fmt.Errorf("%s's record: refused %q (%s), want %q", peer, p.Refused, p.PathReason, reason)
				}
				return nil
			}
		}
		return fmt.Errorf("no record of %s", peer)
	})
}

// stillReaches checks that peer still holds exactly the entries want for
// victim, that victim routes nothing of its own subnet to the overlay,
// and that pods of both still talk (the replies pass peer's VXLAN guard
// only while it still takes victim's address for victim's pods).
func stillReaches(t *testing.T, l *lab.Lab, victim, peer *lab.NodeState, want []string) {
	t.Helper()
	if got := entriesFor(t, l, peer.Name, victim); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s's entries for %s changed:\n%s\nwant\n%s", peer.Name, victim.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, line := range labtest.Kernel(t, l, victim.Name).Mentioning(victim.Subnet.String()) {
		if strings.HasPrefix(line, "route ") && strings.Contains(line, "dev="+names.VXLANDevice) {
			t.Errorf("%s routes its own subnet to the overlay: %s", victim.Name, line)
		}
	}
	for _, p := range [][2]*lab.PodState{{labtest.PodOn(t, l, peer.Name), labtest.PodOn(t, l, victim.Name)}, {labtest.PodOn(t, l, victim.Name), labtest.PodOn(t, l, peer.Name)}} {
		r, err := lab.Ping(context.Background(), p[0].Netns, p[1].IP, 3, 100*time.Millisecond, 2*time.Second)
		if err != nil || r.Received == 0 {
			t.Errorf("pod %s → %s: %+v, %v", p[0].Name, p[1].Name, r, err)
		}
	}
}

// defends waits until node's agent says Degraded naming the bid and
// counts it in weft_datastore_conflicts_total{kind}.
func defends(t *testing.T, l *lab.Lab, node, kind, says string) {
	t.Helper()
	n := mustNode(t, l, node)
	c := agentapi.NewClient(n.RunDir())
	testnet.Eventually(t, 20*time.Second, node+" says Degraded and counts the bid", func() error {
		st, err := c.Status(context.Background())
		if err != nil {
			return err
		}
		found := false
		for _, d := range st.Degraded {
			found = found || strings.Contains(d, says)
		}
		if !found {
			return fmt.Errorf("status degraded %q does not say %q", st.Degraded, says)
		}
		if v := metric(t, n, `weft_datastore_conflicts_total{kind="`+kind+`"}`); v < 1 {
			return fmt.Errorf("weft_datastore_conflicts_total{kind=%q} = %v", kind, v)
		}
		return nil
	})
}

// metric reads one sample from node's agent's metrics; -1 when missing.
func metric(t *testing.T, n *lab.NodeState, sample string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.DialIn(n.Netns)}}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(names.MetricsPort) + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
