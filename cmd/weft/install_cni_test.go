package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

func installCNI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	weft, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(weft, append([]string{"install-cni"}, args...)...).CombinedOutput()
	return string(out), err
}

// install-cni puts the real plugins and a conflist that libcni loads into
// the node's CNI dirs, and a second run (the init container runs on every
// pod start) changes nothing.
func TestInstallCNI(t *testing.T) {
	plugin, err := testbin.Path("weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	args := []string{"--plugin", plugin, "--cni-bin-dir", bin, "--cni-conf-dir", conf, "--data-dir", "/var/lib/weft", "--run-dir", "/run/weft"}
	out, err := installCNI(t, args...)
	if err != nil {
		t.Fatalf("install-cni: %v\n%s", err, out)
	}
	assertInstalled(t, plugin, filepath.Join(bin, names.PluginType))
	l, err := libcni.ConfListFromFile(filepath.Join(conf, names.ConfListName))
	if err != nil {
		t.Fatalf("libcni cannot load the conflist: %v", err)
	}
	if l.Name != names.NetworkName || len(l.Plugins) != 2 || l.Plugins[0].Network.Type != names.PluginType || l.Plugins[1].Network.Type != names.PortmapType {
		t.Fatalf("conflist %s", l.Bytes)
	}
	if !strings.Contains(string(l.Bytes), `"/var/lib/weft"`) {
		t.Fatalf("conflist does not point the plugin at the data dir: %s", l.Bytes)
	}
	before, _ := os.Stat(filepath.Join(conf, names.ConfListName))

	out, err = installCNI(t, args...)
	if err != nil {
		t.Fatalf("second install-cni: %v\n%s", err, out)
	}
	if strings.Contains(out, "installed") {
		t.Fatalf("second run rewrote files:\n%s", out)
	}
	after, _ := os.Stat(filepath.Join(conf, names.ConfListName))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("conflist rewritten without a change")
	}
	if got := dirNames(t, bin); !slices.Equal(got, []string{names.PluginType, names.PortmapType}) {
		t.Fatalf("bin dir holds %v, want only Weft's two plugins", got)
	}
}

// The portmap Weft ships lands beside weft-cni under Weft's own name: a
// node's portmap stays as it was, and the conflist chains Weft's and
// offers CNI 1.1.0, so that runtimes send GC and STATUS.
func TestInstallCNIShipsPortmapBesideTheNodes(t *testing.T) {
	shipped, err := testbin.Path(names.PortmapType)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	// The node's own portmap, as Debian's speaks: up to 1.0.0.
	nodes := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n"
	write(t, filepath.Join(bin, "portmap"), nodes, 0o755)
	nodesInode := inode(t, filepath.Join(bin, "portmap"))

	out, err := installCNI(t, "--cni-bin-dir", bin, "--cni-conf-dir", conf)
	if err != nil {
		t.Fatalf("install-cni: %v\n%s", err, out)
	}
	assertInstalled(t, shipped, filepath.Join(bin, names.PortmapType))
	if b, _ := os.ReadFile(filepath.Join(bin, "portmap")); string(b) != nodes || inode(t, filepath.Join(bin, "portmap")) != nodesInode {
		t.Fatal("the node's portmap was replaced")
	}
	l, err := libcni.ConfListFromFile(filepath.Join(conf, names.ConfListName))
	if err != nil {
		t.Fatal(err)
	}
	if l.CNIVersion != "1.1.0" || len(l.Plugins) != 2 || l.Plugins[1].Network.Type != names.PortmapType {
		t.Fatalf("libcni picked %s from %s, want 1.1.0 with %s chained", l.CNIVersion, l.Bytes, names.PortmapType)
	}

	// Without Weft's portmap (--portmap=), the node's is chained, and the
	// conflist offers only what it speaks.
	bare := t.TempDir()
	write(t, filepath.Join(bare, "bin", "portmap"), nodes, 0o755)
	out, err = installCNI(t, "--portmap=", "--cni-bin-dir", filepath.Join(bare, "bin"), "--cni-conf-dir", filepath.Join(bare, "net.d"))
	if err != nil {
		t.Fatalf("install-cni --portmap=: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(bare, "bin", names.PortmapType)); !os.IsNotExist(err) {
		t.Fatalf("--portmap= installed %s: %v", names.PortmapType, err)
	}
	l, err = libcni.ConfListFromFile(filepath.Join(bare, "net.d", names.ConfListName))
	if err != nil || l.CNIVersion != "1.0.0" || l.Plugins[1].Network.Type != "portmap" {
		t.Fatalf("with the node's portmap only: %v, %s", err, l.Bytes)
	}
}

// A new release's portmap replaces the installed one by a rename: a
// runtime that opened (or is executing) the old binary keeps reading it
// whole, one that opens it afterwards gets the new one whole, and nothing
// half-written or temporary is ever in the bin dir. The same binary again
// is not rewritten.
func TestInstallCNIReplacesPortmapAtomicallyAndOnlyOnChange(t *testing.T) {
	shipped, err := testbin.Path(names.PortmapType)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	args := []string{"--cni-bin-dir", bin, "--cni-conf-dir", conf}
	if out, err := installCNI(t, args...); err != nil {
		t.Fatalf("install-cni: %v\n%s", err, out)
	}
	dst := filepath.Join(bin, names.PortmapType)
	first := inode(t, dst)
	out, err := installCNI(t, args...)
	if err != nil || !strings.Contains(out, dst+" is up to date") || inode(t, dst) != first {
		t.Fatalf("the same portmap again was rewritten: %v\n%s", err, out)
	}

	// The next release: another binary (here the same one, one byte longer).
	old, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(dir, "next-portmap")
	write(t, next, string(old)+"\n", 0o755)
	held, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, err = installCNI(t, append(args, "--portmap", next)...)
	if err != nil || !strings.Contains(out, "installed "+dst) {
		t.Fatalf("install-cni with a new portmap: %v\n%s", err, out)
	}
	assertInstalled(t, next, dst)
	if inode(t, dst) == first {
		t.Fatal("the portmap was rewritten in place, not replaced")
	}
	if b, err := io.ReadAll(held); err != nil || !bytes.Equal(b, old) {
		t.Fatalf("a reader of the old portmap saw it change under it (%v)", err)
	}
	if got := dirNames(t, bin); !slices.Equal(got, []string{names.PluginType, names.PortmapType}) {
		t.Fatalf("bin dir holds %v after the replacement", got)
	}
}

func assertInstalled(t *testing.T, src, dst string) {
	t.Helper()
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s not installed intact from %s: %v", dst, src, err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s mode %v", dst, fi.Mode())
	}
}

func write(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// dirNames lists dir, hidden files (a temporary left behind) included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// Bad input is a clear error and leaves nothing behind.
func TestInstallCNIBadInput(t *testing.T) {
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	out, err := installCNI(t, "--plugin", filepath.Join(dir, "missing"), "--cni-bin-dir", bin, "--cni-conf-dir", conf)
	if err == nil || !strings.Contains(out, "read the weft-cni plugin") {
		t.Fatalf("missing plugin: %v\n%s", err, out)
	}
	// A missing portmap fails before weft-cni is installed.
	out, err = installCNI(t, "--portmap", filepath.Join(dir, "missing"), "--cni-bin-dir", bin, "--cni-conf-dir", conf)
	if err == nil || !strings.Contains(out, "read the weft-portmap plugin") {
		t.Fatalf("missing portmap: %v\n%s", err, out)
	}
	out, err = installCNI(t, "--plugin", "/bin/true", "--cni-bin-dir", "relative/bin", "--cni-conf-dir", conf)
	if err == nil || !strings.Contains(out, "not an absolute path") {
		t.Fatalf("relative dir: %v\n%s", err, out)
	}
	for _, d := range []string{bin, conf} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s was created", d)
		}
	}
}
