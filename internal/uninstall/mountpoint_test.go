package uninstall

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// On a node where /var/lib/weft is a mount point (a hostPath volume, a
// bind mount, as on the lab's kubelet nodes), uninstall empties it: the
// directory itself belongs to the mount and stays.
func TestDataDirThatIsAMountPointIsEmptied(t *testing.T) {
	testnet.RequireRoot(t, "mounts a tmpfs")
	dir := filepath.Join(t.TempDir(), "weft")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	for _, f := range []string{nodestate.FileName, "ipam/weft/leases.json"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := removeDir(dir, names.Dirs{Data: dir})
	if err != nil {
		t.Fatalf("removeDir on a mount point: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("after uninstall %s holds %v (%v)", dir, entries, err)
	}
	if len(removed) != 1 {
		t.Fatalf("removed %v", removed)
	}
}
