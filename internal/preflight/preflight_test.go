package preflight

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/testkit/testnet"
	"golang.org/x/sys/unix"
)

// node is a namespace of the test's own standing in for a node.
type node struct{ *testnet.NS }

func newNode(t *testing.T) node {
	t.Helper()
	return node{testnet.NewNS(t, "pf")}
}

func (n node) do(t *testing.T, f func() error) {
	t.Helper()
	if err := n.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

func (n node) run(t *testing.T, role Role) Report {
	t.Helper()
	o := Defaults(role)
	o.ConfDir = t.TempDir()
	o.SkipKernel = true
	var r Report
	n.do(t, func() (err error) { r, err = Run(o); return err })
	return r
}

func find(t *testing.T, r Report, prefix string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", prefix, r.Checks)
	return Check{}
}

func portChecksOf(r Report) []Check {
	var out []Check
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, "port") {
			out = append(out, c)
		}
	}
	return out
}

func TestCleanNodePassesPortChecks(t *testing.T) {
	n := newNode(t)
	for _, role := range []Role{ControlPlane, Worker} {
		r := n.run(t, role)
		ports := portChecksOf(r)
		if len(ports) < 5 {
			t.Fatalf("%s: only %d port checks: %+v", role, len(ports), ports)
		}
		for _, c := range ports {
			if c.Result != Pass {
				t.Errorf("%s: %s: %s %s", role, c.Name, c.Result, c.Detail)
			}
		}
	}
}

func TestPortTakenByListenerFails(t *testing.T) {
	n := newNode(t)
	var closers []func() error
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	n.do(t, func() error {
		for _, addr := range []string{"127.0.0.1:10250", "0.0.0.0:10251"} {
			l, err := net.Listen("tcp4", addr)
			if err != nil {
				return err
			}
			closers = append(closers, l.Close)
		}
		u, err := net.ListenPacket("udp4", "0.0.0.0:30080")
		if err != nil {
			return err
		}
		closers = append(closers, u.Close)
		return nil
	})
	self := fmt.Sprintf("(pid %d)", os.Getpid())

	r := n.run(t, ControlPlane)
	kubelet := find(t, r, "port 10250/tcp")
	if kubelet.Result != Fail || !strings.Contains(kubelet.Detail, "taken") || !strings.Contains(kubelet.Detail, self) || kubelet.Fix == "" {
		t.Errorf("taken kubelet port: %+v", kubelet)
	}
	legacy := find(t, r, "port 10251/tcp (legacy)")
	if legacy.Result != Warn || !strings.Contains(legacy.Detail, "old Kubernetes releases") {
		t.Errorf("legacy scheduler port: %+v", legacy)
	}
	if !r.Failed() {
		t.Error("report with a taken port did not fail")
	}

	w := n.run(t, Worker)
	np := find(t, w, "ports 30000-32767/udp")
	if np.Result != Warn || !strings.Contains(np.Detail, "30080") {
		t.Errorf("NodePort taken: %+v", np)
	}
	if c := find(t, w, "ports 30000-32767/tcp"); c.Result != Pass {
		t.Errorf("NodePort tcp with only a udp socket: %+v", c)
	}
}

// nftInput makes table inet NAME with an input chain (policy accept unless
// drop) and returns them.
func nftInput(c *nftables.Conn, name string, drop bool) (*nftables.Table, *nftables.Chain) {
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	pol := nftables.ChainPolicyAccept
	if drop {
		pol = nftables.ChainPolicyDrop
	}
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	return tbl, ch
}

func dport(proto uint8, more ...expr.Any) []expr.Any {
	return append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}, more...)
}

func be16(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

func TestPortDroppedByNFTablesRuleFails(t *testing.T) {
	n := newNode(t)
	n.do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl, ch := nftInput(c, "wtofw", false)
		// tcp dport 6443 drop
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: dport(unix.IPPROTO_TCP,
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(6443)},
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})})
		// ip saddr 10.0.0.0/8 tcp dport 2379 drop: only some traffic
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10}},
		}, dport(unix.IPPROTO_TCP, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(2379)}, &expr.Verdict{Kind: expr.VerdictDrop})...)})
		// udp dport { 30000-30100, 31000 } reject, through a jump
		sub := c.AddChain(&nftables.Chain{Name: "nodeports", Table: tbl})
		set := &nftables.Set{Table: tbl, Name: "wtoports", KeyType: nftables.TypeInetService, Interval: true}
		if err := c.AddSet(set, []nftables.SetElement{
			{Key: be16(0), IntervalEnd: true},
			{Key: be16(30000)}, {Key: be16(30101), IntervalEnd: true},
			{Key: be16(31000)}, {Key: be16(31001), IntervalEnd: true},
		}); err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: sub, Exprs: dport(unix.IPPROTO_UDP,
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "nodeports"}}})
		// What older iptables-nft makes of -p tcp --dport 10250 -j DROP:
		// an xtables tcp match, in an ip-family table.
		ipt := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "wtoxt"})
		pol := nftables.ChainPolicyAccept
		in := c.AddChain(&nftables.Chain{Name: "INPUT", Table: ipt, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		c.AddRule(&nftables.Rule{Table: ipt, Chain: in, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Match{Name: "tcp", Info: &xt.Tcp{SrcPorts: [2]uint16{0, 65535}, DstPorts: [2]uint16{10250, 10250}}},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return c.Flush()
	})

	r := n.run(t, ControlPlane)
	api := find(t, r, "port 6443/tcp")
	if api.Result != Fail || !strings.Contains(api.Detail, "dropped") || !strings.Contains(api.Detail, "table inet wtofw chain input") {
		t.Errorf("6443 dropped by nftables: %+v", api)
	}
	etcd := find(t, r, "port 2379/tcp")
	if etcd.Result != Warn || !strings.Contains(etcd.Detail, "some traffic") {
		t.Errorf("2379 dropped for 10.0.0.0/8 only: %+v", etcd)
	}
	if c := find(t, r, "port 10250/tcp"); c.Result != Fail {
		t.Errorf("10250 dropped by an xt tcp match: %+v", c)
	}
	for _, free := range []string{"port 2380/tcp", "port 10259/tcp", "port 4789/udp"} {
		if c := find(t, r, free); c.Result != Pass {
			t.Errorf("%s is not filtered but got %+v", free, c)
		}
	}

	w := n.run(t, Worker)
	udp := find(t, w, "ports 30000-32767/udp")
	if udp.Result != Fail || !strings.Contains(udp.Detail, "30000-30100,31000/udp") || !strings.Contains(udp.Detail, "chain nodeports") {
		t.Errorf("NodePorts rejected through a set: %+v", udp)
	}
	if c := find(t, w, "ports 30000-32767/tcp"); c.Result != Pass {
		t.Errorf("tcp NodePorts are not filtered but got %+v", c)
	}
}

func TestDropPolicyAndRealIptables(t *testing.T) {
	n := newNode(t)
	n.do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl, ch := nftInput(c, "wtofw", true)
		// ct state established accept: not about ports, changes nothing
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{byte(expr.CtStateBitESTABLISHED), 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept}}})
		// udp dport 4789 accept
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: dport(unix.IPPROTO_UDP,
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(4789)}, &expr.Verdict{Kind: expr.VerdictAccept})})
		return c.Flush()
	})
	// And a rule made by iptables itself (iptables-nft), in the node only.
	cmd := exec.Command("nsenter", "--net="+n.Path(), "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9753", "-j", "ACCEPT")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}

	r := n.run(t, Worker)
	kubelet := find(t, r, "port 10250/tcp")
	if kubelet.Result != Fail || !strings.Contains(kubelet.Detail, "drop policy of table inet wtofw chain input") {
		t.Errorf("10250 under a drop policy: %+v", kubelet)
	}
	if c := find(t, r, "port 4789/udp"); c.Result != Pass {
		t.Errorf("4789 accepted before the drop policy: %+v", c)
	}
	// 9753 is accepted by iptables' chain but the inet chain still drops it.
	if c := find(t, r, "port 9753/tcp"); c.Result != Fail || strings.Contains(c.Detail, "table ip filter") {
		t.Errorf("9753: %+v", c)
	}
	n.do(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "wtofw"})
		return c.Flush()
	})
	cmd = exec.Command("nsenter", "--net="+n.Path(), "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9754", "-j", "REJECT")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	r = n.run(t, Worker)
	if c := find(t, r, "port 9754/udp"); c.Result != Fail || !strings.Contains(c.Detail, "table ip filter chain INPUT") {
		t.Errorf("9754 rejected by iptables: %+v", c)
	}
	if c := find(t, r, "port 10250/tcp"); c.Result != Pass {
		t.Errorf("10250 after the drop policy went: %+v", c)
	}
}

func TestNodeChecks(t *testing.T) {
	n := newNode(t)
	n.do(t, func() error {
		// A network of the node's own inside the cluster CIDR, and a
		// small-MTU underlay with the default route.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wtolan"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("10.244.7.1/24")
		if err := netlink.AddrAdd(br, addr); err != nil {
			return err
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wtoul", MTU: 600}, PeerName: "wtoulp"}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
		for _, l := range []netlink.Link{br, v} {
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		ua, _ := netlink.ParseAddr("192.168.90.2/24")
		if err := netlink.AddrAdd(v, ua); err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: v.Index, Gw: net.IPv4(192, 168, 90, 1)})
	})
	confDir := t.TempDir()
	for _, f := range []string{"05-other.conflist", "10-weft.conflist", "99-loopback.conf", "README"} {
		if err := os.WriteFile(filepath.Join(confDir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := Defaults(Worker)
	o.ConfDir, o.SkipKernel = confDir, true
	o.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	var r Report
	n.do(t, func() (err error) { r, err = Run(o); return err })

	if c := find(t, r, "cluster CIDR"); c.Result != Fail || !strings.Contains(c.Detail, "10.244.7.0/24 dev wtolan") {
		t.Errorf("overlapping cluster CIDR: %+v", c)
	}
	if c := find(t, r, "underlay MTU (wtoul)"); c.Result != Fail || !strings.Contains(c.Detail, "550") {
		t.Errorf("MTU 600 underlay: %+v", c)
	}
	if c := find(t, r, "CNI configs"); c.Result != Fail || !strings.Contains(c.Detail, "05-other.conflist") || strings.Contains(c.Detail, "99-loopback") {
		t.Errorf("config sorting first: %+v", c)
	}
	// A fresh namespace does not forward.
	if c := find(t, r, "net.ipv4.ip_forward"); c.Result != Warn {
		t.Errorf("ip_forward in a fresh namespace: %+v", c)
	}

	o.ClusterCIDR = netip.MustParsePrefix("10.96.0.0/16")
	os.Remove(filepath.Join(confDir, "05-other.conflist"))
	n.do(t, func() (err error) { r, err = Run(o); return err })
	if c := find(t, r, "cluster CIDR"); c.Result != Pass {
		t.Errorf("disjoint cluster CIDR: %+v", c)
	}
	if c := find(t, r, "CNI configs"); c.Result != Pass || !strings.Contains(c.Detail, "99-loopback.conf") {
		t.Errorf("only later configs: %+v", c)
	}
}

func TestKernelFeatures(t *testing.T) {
	testnet.RequireRoot(t, "tries the kernel's features in a network namespace of its own")
	for _, c := range kernelChecks() {
		// Every feature Weft needs is built into this machine's kernel.
		if c.Result != Pass {
			t.Errorf("%s: %s %s", c.Name, c.Result, c.Detail)
		}
	}
}
