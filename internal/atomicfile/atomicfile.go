// Package atomicfile writes files that readers never see half-written: the
// CNI plugin, kubelet and other agents read what Weft writes at any moment.
package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data through a temporary file in the same
// directory and a rename, creating the directory if needed; the file is
// synced before the rename and the directory after it, so that what Write
// reports written survives a power loss. It does nothing
// when the file already holds exactly data, so that watchers of the file
// (kubelet watches the CNI conf dir) see a change only when there is one.
// It reports whether the file changed.
func Write(path string, data []byte, perm os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := fsync(tmp); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced: without
	// it a power loss can bring back the old file, or none.
	d, err := os.Open(dir)
	if err != nil {
		return true, fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := fsync(d); err != nil {
		return true, fmt.Errorf("sync %s: %w", dir, err)
	}
	return true, nil
}

// fsync is a variable so that a test can see what each write syncs.
var fsync = func(f *os.File) error { return f.Sync() }
