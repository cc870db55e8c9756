package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// vethOf stands in for the plugin's veth naming.
func vethOf(id, ifname string) string { return "v-" + id + "-" + ifname }

// The ways a crash or a bad disk leaves the lease file.
var damage = map[string]func(path string) error{
	"empty":     func(p string) error { return os.WriteFile(p, nil, 0o600) },
	"truncated": func(p string) error { return os.Truncate(p, 17) },
	"garbage":   func(p string) error { return os.WriteFile(p, []byte("\x00\x00\x00\x00"), 0o600) },
	"missing":   os.Remove,
}

// A damaged lease file is recovered from the spare and what is in use:
// ADD, DEL, GC and STATUS's Ready all work at once, no address in use is
// handed out again, and the damaged file is kept aside.
func TestDamagedLeaseFileIsRecovered(t *testing.T) {
	for name, spoil := range damage {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ipam", "weft")
			subnet := netip.MustParsePrefix("10.9.8.0/24")
			s, err := Open(dir, subnet)
			if err != nil {
				t.Fatal(err)
			}
			var ls []Lease
			for i := 0; i < 3; i++ {
				l, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0")
				if err != nil {
					t.Fatal(err)
				}
				ls = append(ls, l)
			}
			// The spare now holds c0 and c1; c2's lease, the newest, is
			// only in the file the crash spoils. Its pod is up: its veth
			// is seen with its address, its owner unknown to the kernel.
			// c0's pod is known to the runtime's cache.
			inUse := []Lease{
				{Addr: ls[2].Addr, Veth: vethOf("c2", "eth0")},
				{Addr: ls[0].Addr, ContainerID: "c0", IfName: "eth0"},
			}
			if err := spoil(filepath.Join(dir, leasesFile)); err != nil {
				t.Fatal(err)
			}
			s.WithRecovery(Recovery{InUse: func() ([]Lease, error) { return inUse, nil }, VethName: vethOf})

			if err := s.Ready(); err != nil {
				t.Fatalf("Ready after damage: %v", err)
			}
			fresh, _, err := s.Allocate("c3", "eth0")
			if err != nil {
				t.Fatalf("Allocate after damage: %v", err)
			}
			for _, l := range ls {
				if fresh.Addr == l.Addr {
					t.Fatalf("%s handed out again after recovery (held by %s)", fresh.Addr, l.ContainerID)
				}
			}
			// A retried ADD of c2 gets its address back and its lease its owner.
			again, existed, err := s.Allocate("c2", "eth0")
			if err != nil || !existed || again.Addr != ls[2].Addr {
				t.Fatalf("retried ADD of c2: %v existed=%v %v, want %s", again, existed, err, ls[2].Addr)
			}
			if released, err := s.Release("c1", "eth0"); err != nil || !released {
				t.Fatalf("DEL of c1 after damage: %v %v", released, err)
			}
			if _, err := s.Retain(func(l Lease) bool { return l.ContainerID != "c0" }); err != nil {
				t.Fatalf("GC after damage: %v", err)
			}
			leases, err := s.Leases()
			if err != nil || len(leases) != 2 {
				t.Fatalf("leases after recovery, DEL and GC: %v %v, want c2 and c3", leases, err)
			}
			if name != "missing" {
				if _, err := os.Stat(filepath.Join(dir, badFile)); err != nil {
					t.Errorf("the damaged file was not kept aside: %v", err)
				}
			}
		})
	}
}

// When both the lease file and its spare are unreadable, what is in use
// is all there is, and DEL still succeeds: it must never fail forever.
func TestBothCopiesDamaged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ipam", "weft")
	s, _ := Open(dir, netip.MustParsePrefix("10.9.9.0/24"))
	for i := 0; i < 3; i++ {
		if _, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{leasesFile, spareFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held := netip.MustParseAddr("10.9.9.3")
	s.WithRecovery(Recovery{InUse: func() ([]Lease, error) {
		return []Lease{{Addr: held, ContainerID: "c1", IfName: "eth0"}}, nil
	}, VethName: vethOf})
	if _, err := s.Release("c0", "eth0"); err != nil {
		t.Fatalf("DEL with both copies damaged: %v", err)
	}
	if l, ok, err := s.Get("c1", "eth0"); err != nil || !ok || l.Addr != held {
		t.Fatalf("c1 after recovery: %v %v %v", l, ok, err)
	}
}

// Every write syncs the new content before the swap and the directory
// after it: a lease reported to the runtime survives a power loss.
func TestWritesAreSynced(t *testing.T) {
	var synced []string
	orig := fsync
	fsync = func(f *os.File, dataOnly bool) error {
		synced = append(synced, filepath.Base(f.Name()))
		return orig(f, dataOnly)
	}
	t.Cleanup(func() { fsync = orig })
	s := open(t, "10.9.10.0/24")
	for i := 0; i < 2; i++ {
		synced = nil
		if _, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0"); err != nil {
			t.Fatal(err)
		}
		want := []string{spareFile, filepath.Base(s.dir)}
		if fmt.Sprint(synced) != fmt.Sprint(want) {
			t.Fatalf("write %d synced %v, want %v (the new content, then the directory)", i, synced, want)
		}
	}
}

// A lease records when it was handed out; a retried ADD keeps the time.
func TestLeaseRecordsItsAge(t *testing.T) {
	s := open(t, "10.9.11.0/24")
	a, _, err := s.Allocate("c1", "eth0")
	if err != nil || a.Since.IsZero() {
		t.Fatalf("lease %+v %v has no time", a, err)
	}
	b, _, _ := s.Allocate("c1", "eth0")
	if !b.Since.Equal(a.Since) {
		t.Fatalf("a retried ADD changed the lease time: %v then %v", a.Since, b.Since)
	}
}
