package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Write creates the directory and the file with the asked mode, leaves
// the file untouched (same inode) when the content is the same, replaces
// it when not, and leaves no temporary file behind.
func TestWriteOnlyOnChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	path := filepath.Join(dir, "conf.json")

	changed, err := Write(path, []byte("one\n"), 0o640)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	first := inode(t, path)

	changed, err = Write(path, []byte("one\n"), 0o640)
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
	if inode(t, path) != first {
		t.Fatal("the same content replaced the file")
	}

	changed, err = Write(path, []byte("two\n"), 0o640)
	if err != nil || !changed {
		t.Fatalf("new content: changed=%v err=%v", changed, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two\n" {
		t.Fatalf("content %q after the change", b)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("files in %s: %v, want only conf.json", dir, entries)
	}
}

// A write syncs the new file before the rename and the directory after
// it; an unchanged file syncs nothing.
func TestWriteSyncsFileThenDirectory(t *testing.T) {
	var synced []string
	orig := fsync
	fsync = func(f *os.File) error {
		synced = append(synced, f.Name())
		return orig(f)
	}
	t.Cleanup(func() { fsync = orig })
	dir := t.TempDir()
	path := filepath.Join(dir, "conf.json")
	if _, err := Write(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 2 || filepath.Dir(synced[0]) != dir || synced[1] != dir {
		t.Fatalf("synced %v, want the temporary file in %s, then %s itself", synced, dir, dir)
	}
	synced = nil
	if _, err := Write(path, []byte("one\n"), 0o644); err != nil || len(synced) != 0 {
		t.Fatalf("an unchanged write synced %v (%v)", synced, err)
	}
}
