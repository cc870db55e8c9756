package cni_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/netns"
)

// Real packets: pod to gateway and pod to pod by ICMP, and a TCP exchange
// between the two pods across the bridge.
func TestTwoPodsExchangePackets(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.10.0/24", nil)
	podA, podB := newPod(t), newPod(t)
	a := podAddr(t, n.mustAdd(conf, rt("pod-a", podA, "eth0")))
	b := podAddr(t, n.mustAdd(conf, rt("pod-b", podB, "eth0")))
	gw := netip.MustParseAddr("10.99.10.1")

	for _, c := range []struct {
		from string
		to   netip.Addr
	}{{podA, gw}, {podB, gw}, {podA, b}, {podB, a}} {
		if err := ping(c.from, c.to); err != nil {
			t.Error(err)
		}
	}
	if err := tcpExchange(podB, b, podA); err != nil {
		t.Error(err)
	}
	for _, id := range []string{"pod-a", "pod-b"} {
		pod := podA
		if id == "pod-b" {
			pod = podB
		}
		if err := n.del(conf, rt(id, pod, "eth0")); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(podA, gw); err == nil {
		t.Error("pod A still reaches the gateway after DEL")
	}
}

// tcpExchange listens in server's namespace on addr, connects from
// client's namespace and checks a line goes there and back.
func tcpExchange(server string, addr netip.Addr, client string) error {
	return tcpExchangeVia(server, addr, 7000, client, addr, 7000)
}

// tcpExchangeVia listens in server's namespace on addr:port and connects
// from client's namespace to dst:dport (which may be translated to it).
func tcpExchangeVia(server string, addr netip.Addr, port uint16, client string, dst netip.Addr, dport uint16) error {
	var ln net.Listener
	if err := inNS(server, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, port).String())
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = c.Write([]byte("re: " + line))
		}
		done <- err
	}()
	var conn net.Conn
	if err := inNS(client, func() (err error) {
		conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(dst, dport).String(), 3*time.Second)
		return err
	}); err != nil {
		return fmt.Errorf("connect to %s:%d: %w", dst, dport, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("hello weft\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if got != "re: hello weft\n" {
		return fmt.Errorf("reply %q", got)
	}
	return <-done
}

// A retried ADD (same container id and interface) returns the same result
// and creates nothing twice.
func TestRetriedAddReturnsTheSameResult(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.11.0/24", nil)
	pod := newPod(t)
	first := n.mustAdd(conf, rt("retry", pod, "eth0"))
	second := n.mustAdd(conf, rt("retry", pod, "eth0"))
	j1, _ := json.Marshal(first)
	j2, _ := json.Marshal(second)
	if string(j1) != string(j2) {
		t.Fatalf("retried ADD differs:\n%s\n%s", j1, j2)
	}
	if vs := n.veths(); len(vs) != 1 {
		t.Errorf("%d veths after a retried ADD, want 1", len(vs))
	}
	if l := n.leases(); len(l) != 1 {
		t.Errorf("leases after a retried ADD: %v", l)
	}
	err := inNS(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || len(routes) != 2 {
			return fmt.Errorf("after a retried ADD: addresses %v routes %v", addrs, routes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An address that is not the lease (one a lost lease left, say) does
	// not survive a retried ADD: the pod holds exactly its lease.
	if err := inNS(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		stale, _ := netlink.ParseAddr("10.99.11.200/24")
		return netlink.AddrAdd(l, stale)
	}); err != nil {
		t.Fatal(err)
	}
	third := n.mustAdd(conf, rt("retry", pod, "eth0"))
	if podAddr(t, third) != podAddr(t, first) {
		t.Fatalf("retried ADD moved the pod from %s to %s", podAddr(t, first), podAddr(t, third))
	}
	if err := inNS(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IP.String() != podAddr(t, first).String() {
			return fmt.Errorf("addresses after a retried ADD over a stale one: %v, want only %s", addrs, podAddr(t, first))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A second interface of the same container is a new attachment.
	other := n.mustAdd(conf, rt("retry", pod, "net1"))
	if podAddr(t, other) == podAddr(t, first) {
		t.Fatal("net1 got eth0's address")
	}
}

// 100 ADDs at once: 100 distinct addresses, each answering pings from the
// node; then 100 DELs at once leave nothing.
func TestConcurrentAdds(t *testing.T) {
	const pods = 100
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.12.0/24", nil)
	paths := make([]string, pods)
	for i := range paths {
		paths[i] = newPod(t)
	}
	addrs := make([]netip.Addr, pods)
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := n.add(conf, rt(fmt.Sprintf("c%03d", i), paths[i], "eth0"))
			if err != nil {
				errs <- err
				return
			}
			addrs[i] = podAddr(t, res)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent ADD: %v", err)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	nodePath := "/run/netns/" + n.name
	for i, a := range addrs {
		if err := ping(nodePath, a); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	if vs := n.veths(); len(vs) != pods {
		t.Fatalf("%d veths, want %d", len(vs), pods)
	}

	errs = make(chan error, pods)
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.del(conf, rt(fmt.Sprintf("c%03d", i), paths[i], "eth0")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent DEL: %v", err)
	}
	if vs := n.veths(); len(vs) != 0 {
		t.Errorf("%d veths left", len(vs))
	}
	if l := n.leases(); len(l) != 0 {
		t.Errorf("%d leases left", len(l))
	}
}

// CHECK fails, with weft's code 103, when any part of the attachment is
// missing.
func TestCheckFindsWhatIsMissing(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.13.0/24", map[string]any{"bridge": "wtcbr1"})
	pod := newPod(t)
	r := rt("checked", pod, "eth0")
	res := n.mustAdd(conf, r)
	if err := n.check(conf, r); err != nil {
		t.Fatal(err)
	}
	// The pod loses its default route.
	inNS(pod, func() error {
		l, _ := netlink.LinkByName("eth0")
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		for _, rt := range routes {
			if rt.Gw != nil {
				netlink.RouteDel(&rt)
			}
		}
		return nil
	})
	if err := n.check(conf, r); cniCode(err) != 103 {
		t.Fatalf("CHECK without the default route: %v", err)
	}
	n.mustAdd(conf, r) // a retried ADD repairs it
	if err := n.check(conf, r); err != nil {
		t.Fatalf("CHECK after the repair: %v", err)
	}
	// The host end leaves the bridge.
	n.do(func() error {
		l, _ := netlink.LinkByName(res.Interfaces[1].Name)
		return netlink.LinkSetNoMaster(l)
	})
	if err := n.check(conf, r); cniCode(err) != 103 {
		t.Fatalf("CHECK with the veth off the bridge: %v", err)
	}
	// The pod interface is gone altogether.
	inNS(pod, func() error {
		l, _ := netlink.LinkByName("eth0")
		return netlink.LinkDel(l)
	})
	if err := n.check(conf, r); cniCode(err) != 103 {
		t.Fatalf("CHECK with eth0 gone: %v", err)
	}
}

// GC with cni.dev/valid-attachments releases exactly the leases of the
// attachments not listed and removes their veths, and removes an orphan
// veth on the bridge; the valid ones keep working.
func TestGCReleasesExactlyTheInvalid(t *testing.T) {
	n := newNode(t)
	confBytes := n.netConf("1.1.0", "10.99.14.0/24", nil)
	conf := n.conf("1.1.0", "10.99.14.0/24", nil)
	var valid []types.GCAttachment
	results := map[string]*current.Result{}
	pods := map[string]string{}
	for i := range 5 {
		id := fmt.Sprintf("gc%d", i)
		pods[id] = newPod(t)
		results[id] = n.mustAdd(conf, rt(id, pods[id], "eth0"))
		if i%2 == 0 {
			valid = append(valid, types.GCAttachment{ContainerID: id, IfName: "eth0"})
		}
	}
	// An orphan: a veth on the bridge with weft's prefix and no lease.
	orphan := "weftorphan" + randName(t)[3:7]
	if err := n.do(func() error {
		br, err := netlink.LinkByName("weft0")
		if err != nil {
			return err
		}
		la := netlink.NewLinkAttrs()
		la.Name = orphan
		la.MasterIndex = br.Attrs().Index
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wtcorph" + randName(t)[3:7]})
	}); err != nil {
		t.Fatal(err)
	}

	list, err := libcniList(confBytes)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh cache: libcni would otherwise DEL the cached invalid
	// attachments itself, and the plugin's GC would have nothing to do.
	gcClient := freshClient(t, n)
	if err := n.do(func() error {
		return gcClient.GCNetworkList(t.Context(), list, &libcni.GCArgs{ValidAttachments: valid})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	leases := n.leases()
	if len(leases) != len(valid) {
		t.Fatalf("leases after GC: %v, want %v", leases, valid)
	}
	for _, l := range leases {
		if l["id"] != "gc0" && l["id"] != "gc2" && l["id"] != "gc4" {
			t.Errorf("GC kept %v", l)
		}
	}
	names := map[string]bool{}
	for _, l := range n.veths() {
		names[l.Attrs().Name] = true
	}
	if len(names) != 3 {
		t.Errorf("veths after GC: %v", names)
	}
	for id, res := range results {
		_, kept := names[res.Interfaces[1].Name]
		wantKept := id == "gc0" || id == "gc2" || id == "gc4"
		if kept != wantKept {
			t.Errorf("%s: veth kept=%v, want %v", id, kept, wantKept)
		}
		if wantKept {
			if err := n.check(conf, rt(id, pods[id], "eth0")); err != nil {
				t.Errorf("CHECK of valid %s after GC: %v", id, err)
			}
		}
	}
}

// DEL after the runtime already removed the pod's namespace succeeds and
// releases the address; the kernel takes the veth pair with the namespace.
func TestDelAfterTheNetnsIsGone(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.15.0/24", nil)
	pod := newPod(t)
	n.mustAdd(conf, rt("gone", pod, "eth0"))
	if err := netns.Delete(filepath.Base(pod)); err != nil {
		t.Fatal(err)
	}
	if err := n.del(conf, rt("gone", pod, "eth0")); err != nil {
		t.Fatalf("DEL with the netns gone: %v", err)
	}
	if l := n.leases(); len(l) != 0 {
		t.Errorf("leases after DEL: %v", l)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(n.veths()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("host veth still there 10s after its namespace went: %v", n.veths())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
