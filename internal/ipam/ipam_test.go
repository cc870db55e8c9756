package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func open(t *testing.T, subnet string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "ipam", "weft"), netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckSubnet(t *testing.T) {
	for _, bad := range []string{"10.244.1.0/31", "10.244.1.0/32", "10.244.1.5/24", "fd00::/64",
		"0.0.0.0/0", "128.0.0.0/1", "10.0.0.0/7", "127.0.0.0/8", "127.1.0.0/16", "0.0.0.0/24",
		"169.254.0.0/16", "169.254.3.0/24", "224.0.0.0/24", "239.1.0.0/16", "240.0.0.0/24", "255.255.255.0/30"} {
		if err := CheckSubnet(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("CheckSubnet(%s) accepted", bad)
		}
	}
	if err := CheckSubnet(netip.Prefix{}); err == nil {
		t.Error("CheckSubnet(zero) accepted")
	}
	for _, good := range []string{"10.244.1.0/24", "10.0.0.0/30", "10.0.0.0/8", "100.64.0.0/16", "192.168.5.0/24", "1.0.0.0/8"} {
		if err := CheckSubnet(netip.MustParsePrefix(good)); err != nil {
			t.Errorf("CheckSubnet(%s): %v", good, err)
		}
	}
}

// A /29 has six addresses after the network address: the gateway, five
// pods; the broadcast address is not one of them.
func TestAllocateSkipsNetworkGatewayBroadcastAndFills(t *testing.T) {
	s := open(t, "10.9.0.8/29")
	got := map[netip.Addr]bool{}
	for i := 0; i < 5; i++ {
		l, existed, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if existed {
			t.Errorf("lease %d reported as existing", i)
		}
		got[l.Addr] = true
	}
	for _, a := range []string{"10.9.0.10", "10.9.0.11", "10.9.0.12", "10.9.0.13", "10.9.0.14"} {
		if !got[netip.MustParseAddr(a)] {
			t.Errorf("%s was not handed out; got %v", a, got)
		}
	}
	_, _, err := s.Allocate("c5", "eth0")
	if !errors.Is(err, ErrFull) {
		t.Fatalf("sixth allocation in a /29: got %v, want ErrFull", err)
	}
	if err := s.Ready(); !errors.Is(err, ErrFull) {
		t.Errorf("Ready on a full subnet: %v", err)
	}
	if _, err := s.Release("c2", "eth0"); err != nil {
		t.Fatal(err)
	}
	l, _, err := s.Allocate("c5", "eth0")
	if err != nil || l.Addr != netip.MustParseAddr("10.9.0.12") {
		t.Fatalf("after a release: %v %v, want 10.9.0.12", l, err)
	}
}

func TestAllocateIsIdempotentPerAttachment(t *testing.T) {
	s := open(t, "10.9.1.0/24")
	a, _, err := s.Allocate("c1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	b, existed, err := s.Allocate("c1", "eth0")
	if err != nil || !existed || b != a {
		t.Fatalf("retry: %v existed=%v %v, want %v", b, existed, err, a)
	}
	c, _, err := s.Allocate("c1", "net1")
	if err != nil || c.Addr == a.Addr {
		t.Fatalf("second interface of the same container got %v (%v)", c, err)
	}
	leases, err := s.Leases()
	if err != nil || len(leases) != 2 {
		t.Fatalf("leases: %v %v", leases, err)
	}
}

func TestReleasedAddressIsNotReusedAtOnce(t *testing.T) {
	s := open(t, "10.9.2.0/24")
	a, _, _ := s.Allocate("c1", "eth0")
	if released, err := s.Release("c1", "eth0"); err != nil || !released {
		t.Fatalf("release: %v %v", released, err)
	}
	if released, err := s.Release("c1", "eth0"); err != nil || released {
		t.Fatalf("second release: %v %v", released, err)
	}
	b, _, _ := s.Allocate("c2", "eth0")
	if b.Addr == a.Addr {
		t.Fatalf("released %s handed out again at once", a.Addr)
	}
}

func TestRetainReleasesExactlyTheInvalid(t *testing.T) {
	s := open(t, "10.9.3.0/24")
	for i := 0; i < 6; i++ {
		if _, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	released, err := s.Retain(func(l Lease) bool { return l.ContainerID != "c1" && l.ContainerID != "c4" })
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 2 {
		t.Fatalf("released %v, want c1 and c4", released)
	}
	for _, id := range []string{"c0", "c2", "c3", "c5"} {
		if _, ok, _ := s.Get(id, "eth0"); !ok {
			t.Errorf("%s lost its lease", id)
		}
	}
	for _, id := range []string{"c1", "c4"} {
		if _, ok, _ := s.Get(id, "eth0"); ok {
			t.Errorf("%s kept its lease", id)
		}
	}
}

// Every Allocate opens the lock file anew, so goroutines contend exactly as
// separate plugin processes do.
func TestConcurrentAllocationsAreDistinct(t *testing.T) {
	s := open(t, "10.9.4.0/24")
	const n = 100
	addrs := make([]netip.Addr, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0")
			if err != nil {
				errs <- err
				return
			}
			addrs[i] = l.Addr
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	leases, _ := s.Leases()
	if len(leases) != n {
		t.Fatalf("%d leases stored, want %d", len(leases), n)
	}
}

// A store that cannot recover refuses to write over a damaged lease file
// (it might hand out an address a pod holds) and reads the spare.
func TestDamagedStoreWithoutRecoveryIsNotWritten(t *testing.T) {
	s := open(t, "10.9.5.0/24")
	for _, id := range []string{"c1", "c2"} {
		if _, _, err := s.Allocate(id, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, leasesFile), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate("c3", "eth0"); err == nil {
		t.Fatal("allocation from a damaged store without recovery succeeded")
	}
	leases, err := s.Leases()
	if err != nil || len(leases) != 1 || leases[0].ContainerID != "c1" {
		t.Fatalf("reading a damaged store: %v %v, want the spare's lease of c1", leases, err)
	}
}

func TestSubnetChangeReplacesTheOldLease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ipam")
	old, _ := Open(dir, netip.MustParsePrefix("10.9.6.0/24"))
	if _, _, err := old.Allocate("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	cur, _ := Open(dir, netip.MustParsePrefix("10.9.7.0/24"))
	l, existed, err := cur.Allocate("c1", "eth0")
	if err != nil || existed || !netip.MustParsePrefix("10.9.7.0/24").Contains(l.Addr) {
		t.Fatalf("after the subnet changed: %v existed=%v %v", l, existed, err)
	}
	leases, _ := cur.Leases()
	if len(leases) != 1 {
		t.Fatalf("leases %v, want only the new one", leases)
	}
}

// Releasing on a node that never allocated (DEL before any ADD, GC on a
// fresh node) succeeds and creates no files.
func TestReleaseOnAnEmptyNodeCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ipam", "weft")
	s := OpenForRelease(dir)
	if released, err := s.Release("c1", "eth0"); err != nil || released {
		t.Fatalf("release: %v %v", released, err)
	}
	if _, err := s.Retain(func(Lease) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate("c1", "eth0"); err == nil {
		t.Fatal("a release-only store allocated")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s exists after releasing nothing: %v", dir, err)
	}
}
