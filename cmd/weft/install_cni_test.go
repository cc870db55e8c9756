package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// install-cni puts the real plugin and a conflist that libcni loads into
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
	want, _ := os.ReadFile(plugin)
	got, err := os.ReadFile(filepath.Join(bin, names.PluginType))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("plugin not installed intact: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(bin, names.PluginType)); fi.Mode().Perm() != 0o755 {
		t.Fatalf("plugin mode %v", fi.Mode())
	}
	l, err := libcni.ConfListFromFile(filepath.Join(conf, names.ConfListName))
	if err != nil {
		t.Fatalf("libcni cannot load the conflist: %v", err)
	}
	if l.Name != names.NetworkName || len(l.Plugins) != 1 || l.Plugins[0].Network.Type != names.PluginType {
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
	entries, _ := os.ReadDir(bin)
	if len(entries) != 1 {
		t.Fatalf("bin dir holds %d files, want only the plugin", len(entries))
	}
}

// Bad input is a clear error and leaves nothing behind.
func TestInstallCNIBadInput(t *testing.T) {
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	out, err := installCNI(t, "--plugin", filepath.Join(dir, "missing"), "--cni-bin-dir", bin, "--cni-conf-dir", conf)
	if err == nil || !strings.Contains(out, "read the plugin") {
		t.Fatalf("missing plugin: %v\n%s", err, out)
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
