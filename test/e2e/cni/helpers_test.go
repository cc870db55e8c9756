// Package cni_test drives the real weft-cni binary through libcni, the
// library containerd and CRI-O use, in network namespaces of its own: a
// "node" namespace where the plugin runs and holds the bridge, and one
// namespace per pod. Nothing touches the host's own namespace.
package cni_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// prefix starts every namespace and interface name these tests make.
const prefix = "cn"

const refPluginDir = "/usr/lib/cni"

func randName(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// node is a network namespace standing for a Kubernetes node: the plugin
// runs inside it, so the bridge and host-side veths land there.
type node struct {
	t       testing.TB
	name    string
	ns      ns.NetNS
	dataDir string
	cni     *libcni.CNIConfig
	binDir  string
}

func newNode(t testing.TB) *node {
	t.Helper()
	testnet.RequireRoot(t)
	bin, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	n := testnet.NewNS(t, prefix)
	nd := &node{t: t, name: n.Name, ns: n, dataDir: t.TempDir(), binDir: filepath.Dir(bin)}
	nd.cni = freshClient(t, nd)
	return nd
}

// freshClient is a libcni client for the node with a result cache of its
// own: what another client cached is unknown to it.
func freshClient(t testing.TB, n *node) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{n.binDir, refPluginDir}, t.TempDir(), nil)
}

// do runs fn inside the node's namespace. A plugin that libcni starts from
// fn inherits it: the child is forked from the thread ns.Do moved there.
func (n *node) do(fn func() error) error {
	return n.ns.Do(func(ns.NetNS) error { return fn() })
}

// newPod makes a pod network namespace and returns its path.
func newPod(t testing.TB) string {
	t.Helper()
	p := testnet.NewNS(t, prefix)
	// Only the mount holds it, as a runtime's pod namespace: removing it
	// (as a runtime does before a late DEL) takes its interfaces along.
	p.Close()
	return p.Path()
}

// netConf is weft-cni's config for this node; extra keys override.
func (n *node) netConf(version, subnet string, extra map[string]any) []byte {
	c := map[string]any{
		"cniVersion": version,
		"name":       "weft",
		"type":       "weft-cni",
		"dataDir":    n.dataDir,
	}
	if subnet != "" {
		c["subnet"] = subnet
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		n.t.Fatal(err)
	}
	return b
}

// libcniList wraps one plugin config in a network list, as GC and STATUS
// take one.
func libcniList(conf []byte) (*libcni.NetworkConfigList, error) {
	c, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		return nil, err
	}
	list, err := json.Marshal(map[string]any{
		"name": c.Network.Name, "cniVersion": c.Network.CNIVersion, "plugins": []json.RawMessage{conf},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(list)
}

func (n *node) conf(version, subnet string, extra map[string]any) *libcni.NetworkConfig {
	c, err := libcni.NetworkPluginConfFromBytes(n.netConf(version, subnet, extra))
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func rt(id, netnsPath, ifname string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netnsPath, IfName: ifname}
}

func (n *node) add(conf *libcni.NetworkConfig, r *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := n.do(func() (err error) {
		res, err = n.cni.AddNetwork(context.Background(), conf, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (n *node) mustAdd(conf *libcni.NetworkConfig, r *libcni.RuntimeConf) *current.Result {
	n.t.Helper()
	res, err := n.add(conf, r)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", r.ContainerID, err)
	}
	return res
}

func (n *node) del(conf *libcni.NetworkConfig, r *libcni.RuntimeConf) error {
	return n.do(func() error { return n.cni.DelNetwork(context.Background(), conf, r) })
}

func (n *node) check(conf *libcni.NetworkConfig, r *libcni.RuntimeConf) error {
	return n.do(func() error { return n.cni.CheckNetwork(context.Background(), conf, r) })
}

// podAddr is the pod interface's address in an ADD result.
func podAddr(t testing.TB, res *current.Result) netip.Addr {
	t.Helper()
	for _, ip := range res.IPs {
		if ip.Interface != nil && res.Interfaces[*ip.Interface].Sandbox != "" {
			a, _ := netip.AddrFromSlice(ip.Address.IP.To4())
			return a
		}
	}
	t.Fatalf("result has no pod address: %v", res)
	return netip.Addr{}
}

// links lists the node's links whose names start with p.
func (n *node) links(p string) []netlink.Link {
	n.t.Helper()
	var out []netlink.Link
	err := n.do(func() error {
		all, err := netlink.LinkList()
		for _, l := range all {
			if strings.HasPrefix(l.Attrs().Name, p) {
				out = append(out, l)
			}
		}
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// veths is the node's veths (the host ends of pods).
func (n *node) veths() []netlink.Link {
	var out []netlink.Link
	for _, l := range n.links("") {
		if l.Type() == "veth" {
			out = append(out, l)
		}
	}
	return out
}

// leases reads the plugin's lease file as the store wrote it.
func (n *node) leases() []map[string]string {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dataDir, "ipam", "weft", "leases.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		n.t.Fatal(err)
	}
	var st struct {
		Leases []map[string]string `json:"leases"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		n.t.Fatal(err)
	}
	return st.Leases
}

// inNS runs fn in the namespace at path.
func inNS(path string, fn func() error) error {
	target, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error { return fn() })
}

// ping sends ICMP echo requests from the namespace at nsPath to dst until
// one is answered: at most 3 tries of 2 s.
func ping(nsPath string, dst netip.Addr) error {
	var conn *icmp.PacketConn
	if err := inNS(nsPath, func() (err error) {
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("icmp socket in %s: %w", nsPath, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	var last error
	for seq := 1; seq <= 3; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("weft")}}
		b, _ := msg.Marshal(nil)
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, nsPath, err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				last = err
				break
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && from.String() == dst.String() {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s from %s: no reply: %v", dst, nsPath, last)
}

// cniCode returns the CNI error code err carries, or -1.
func cniCode(err error) int {
	var e *types.Error
	if errors.As(err, &e) {
		return int(e.Code)
	}
	return -1
}
