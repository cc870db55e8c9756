package preflight

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/names"
	"golang.org/x/sys/unix"
)

// kernelChecks tries each feature Weft needs for real, in a network
// namespace that exists only for the duration: a file in /sys/module says
// nothing about a feature built in, and creating the object is the one
// test that cannot be wrong. The namespace belongs to a thread that exits
// afterwards, which frees it and everything made in it.
func kernelChecks() []Check {
	out := make(chan []Check, 1)
	go func() {
		// Never unlocked: the thread dies with the goroutine, and with it
		// the throwaway namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			out <- []Check{{Name: "kernel features", Result: Fail,
				Detail: fmt.Sprintf("cannot create a network namespace to try them in: %v", err),
				Fix:    "run preflight as root (it needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"}}
			return
		}
		out <- tryFeatures()
	}()
	return <-out
}

type feature struct {
	name string
	try  func() error
	fix  string
}

func tryFeatures() []Check {
	features := []feature{
		{"bridge", tryBridge, "load the bridge module (CONFIG_BRIDGE): pods attach to a bridge"},
		{"veth", tryVeth, "load the veth module (CONFIG_VETH): every pod has a veth pair"},
		{"vxlan", tryVXLAN, "load the vxlan module (CONFIG_VXLAN): needed for nodes on different L2 segments"},
		{"nftables", tryNFTables, "load nf_tables (CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET): Weft's policy and masquerade live there"},
		{"conntrack", tryConntrack, "load nf_conntrack and nft_ct (CONFIG_NF_CONNTRACK, CONFIG_NFT_CT): NetworkPolicy and masquerade track connections"},
		{"masquerade", tryMasquerade, "load nft_masq and nf_nat (CONFIG_NFT_MASQ): pods reach outside the cluster through it"},
	}
	var checks []Check
	for _, f := range features {
		c := Check{Name: "kernel: " + f.name, Result: Pass, Detail: "works"}
		if err := f.try(); err != nil {
			c.Result, c.Detail, c.Fix = Fail, err.Error(), f.fix
		}
		checks = append(checks, c)
	}
	return checks
}

func tryBridge() error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create a bridge: %w", err)
	}
	return netlink.LinkDel(br)
}

func tryVeth() error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe1"}, PeerName: "probe2"}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create a veth pair: %w", err)
	}
	return netlink.LinkDel(v)
}

func tryVXLAN() error {
	v := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "probe3"}, VxlanId: names.VNI, Port: names.VXLANPort}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create a VXLAN device: %w", err)
	}
	// Up binds its UDP socket, which needs the kernel's UDP tunnel
	// support: creating the device alone does not. (The port is always
	// free in this fresh namespace; the port checks look at the node's.)
	if err := netlink.LinkSetUp(v); err != nil {
		netlink.LinkDel(v)
		return fmt.Errorf("bring a VXLAN device up: %w", err)
	}
	return netlink.LinkDel(v)
}

func nftTry(build func(c *nftables.Conn, t *nftables.Table)) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "preflight"})
	build(c, t)
	if err := c.Flush(); err != nil {
		return err
	}
	c.DelTable(t)
	return c.Flush()
}

func tryNFTables() error {
	err := nftTry(func(c *nftables.Conn, t *nftables.Table) {
		c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	})
	if err != nil {
		return fmt.Errorf("create an inet table with a forward chain: %w", err)
	}
	return nil
}

func tryConntrack() error {
	err := nftTry(func(c *nftables.Conn, t *nftables.Table) {
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: []byte{byte(expr.CtStateBitESTABLISHED), 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	})
	if err != nil {
		return fmt.Errorf("add a rule matching ct state: %w", err)
	}
	return nil
}

func tryMasquerade() error {
	err := nftTry(func(c *nftables.Conn, t *nftables.Table) {
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Masq{}}})
	})
	if err != nil {
		return fmt.Errorf("add a masquerade rule: %w", err)
	}
	return nil
}

// sysctlChecks reads the namespace's forwarding and br_netfilter settings.
// /proc/sys/net answers for the network namespace of the thread that
// opens it.
func sysctlChecks() []Check {
	var checks []Check
	fwd, err := readSysctl("net/ipv4/ip_forward")
	switch {
	case err != nil:
		checks = append(checks, Check{Name: "net.ipv4.ip_forward", Result: Warn, Detail: err.Error()})
	case fwd != "1":
		// The agent turns forwarding on when it starts; what matters is
		// that nothing turns it off again behind its back.
		checks = append(checks, Check{Name: "net.ipv4.ip_forward", Result: Warn,
			Detail: "is " + fwd + ": the Weft agent turns it on at start, but until then (and whenever something resets it) the node does not forward pods' packets",
			Fix:    "set net.ipv4.ip_forward = 1 in /etc/sysctl.d/ so that a reboot or sysctl --system does not turn it off"})
	default:
		checks = append(checks, Check{Name: "net.ipv4.ip_forward", Result: Pass, Detail: "1"})
	}

	v, err := readSysctl("net/bridge/bridge-nf-call-iptables")
	switch {
	case errors.Is(err, os.ErrNotExist):
		checks = append(checks, Check{Name: "br_netfilter", Result: Warn,
			Detail: "not loaded: traffic between pods on the same bridge skips iptables/nftables, so kube-proxy's Service rules miss a pod reaching a Service backed by a pod on the same node",
			Fix:    "load br_netfilter (modprobe br_netfilter; list it in /etc/modules-load.d/) and set net.bridge.bridge-nf-call-iptables = 1"})
	case err != nil:
		checks = append(checks, Check{Name: "br_netfilter", Result: Warn, Detail: err.Error()})
	case v != "1":
		checks = append(checks, Check{Name: "net.bridge.bridge-nf-call-iptables", Result: Warn,
			Detail: "is " + v + ": bridged pod-to-pod traffic skips kube-proxy's Service rules",
			Fix:    "set net.bridge.bridge-nf-call-iptables = 1 in /etc/sysctl.d/"})
	default:
		checks = append(checks, Check{Name: "net.bridge.bridge-nf-call-iptables", Result: Pass, Detail: "1"})
	}
	return checks
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(trimNL(b)), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
