package uninstall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// markers are what only Weft puts in its data and run directories: the
// node state, the plugin's IPAM store, the agent's sockets.
var markers = []string{nodestate.FileName, filepath.Dir(ipam.Dir("", names.NetworkName)), names.APISocket, cniconf.EventsSocket}

// removeDir deletes dir with everything in it, but only when it is Weft's
// (see weftDir). A missing directory is not an error.
func removeDir(dir string, all names.Dirs) ([]string, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("refusing to remove %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	if err := weftDir(dir, entries, all); err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove %s: %w", filepath.Join(dir, e.Name()), err)
		}
	}
	err = os.Remove(dir)
	if errors.Is(err, unix.EBUSY) {
		// A mount point (a hostPath volume, a bind mount): what Weft kept
		// there is gone; the directory is the mount's, not Weft's.
		return []string{dir + " (emptied; it is a mount point)"}, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove %s: %w", dir, err)
	}
	return []string{dir}, nil
}

// weftDir refuses a directory unless it is Weft's: its name is Weft's
// (/var/lib/weft, /run/weft), or it holds something only Weft puts there
// (the node state, the IPAM store, the agent's sockets), or it is empty
// and so holds nothing to lose. A mistyped flag (--data-dir=/var/lib,
// /var/lib/kubelet, /etc) therefore deletes nothing. The root and the
// directories right under it are refused whatever they hold, and so is a
// directory that holds the CNI config or plugin directory, which other
// networks' files share.
func weftDir(dir string, entries []os.DirEntry, all names.Dirs) error {
	if dir == "/" || filepath.Dir(dir) == "/" {
		return fmt.Errorf("refusing to remove %s: a system directory, not Weft's", dir)
	}
	for _, shared := range []string{all.CNIConf, all.CNIBin} {
		if rel, err := filepath.Rel(dir, filepath.Clean(shared)); shared != "" && err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fmt.Errorf("refusing to remove %s and everything in it: it holds the CNI directory %s", dir, shared)
		}
	}
	if filepath.Base(dir) == names.NetworkName || len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		for _, m := range markers {
			if e.Name() == m {
				return nil
			}
		}
	}
	return fmt.Errorf("refusing to remove %s and everything in it: it is not Weft's (a Weft directory is named %q or holds %s)",
		dir, names.NetworkName, strings.Join(markers, ", "))
}
