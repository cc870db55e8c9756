package controlplane

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A control plane inside a namespace of the test's own, on an address only
// that namespace has, is reachable by a client that dials from inside it;
// Stop leaves no process and no file behind, and a kept Dir brings the
// same cluster back.
func TestControlPlaneInNamespace(t *testing.T) {
	n := testnet.NewNS(t, "cp")
	addr := netip.MustParseAddr("192.0.2.10") // TEST-NET-1, only on this namespace's loopback
	if err := n.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(32, 32)}})
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := Options{NetNS: n.Path(), Address: addr, Dir: dir, Logf: t.Logf}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid, c.kcm.cmd.Process.Pid}
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, nodeNS("wtk-kept"), metav1.CreateOptions{}); err != nil {
		c.Stop()
		t.Fatal(err)
	}
	url := c.URL
	c.Stop()
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d still runs after Stop", pid)
		}
	}

	// Same Dir: same URL, same data.
	c, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.URL != url {
		t.Errorf("restarted at %s, was %s", c.URL, url)
	}
	cs, _ = c.Client()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "wtk-kept", metav1.GetOptions{}); err != nil {
		t.Errorf("data lost across a restart: %v", err)
	}
}

// Without a Dir, Stop removes the control plane's directory.
func TestControlPlaneRemovesItsFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Kubernetes control plane: not run by -short")
	}
	c := StartT(t, Options{Prefix: "wtk-kube"})
	dir := c.Dir
	c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left after Stop", dir)
	}
}

func nodeNS(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
