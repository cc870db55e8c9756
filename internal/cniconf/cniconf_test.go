package cniconf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/cniconf"
)

func TestWtaConfListIsValidCNIAndWrittenOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	c := cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft", Portmap: true}
	changed, err := cniconf.Write(dir, c)
	if err != nil || !changed {
		t.Fatalf("first Write = %v, %v", changed, err)
	}
	// libcni, as the runtimes use it, must load what was written.
	l, err := libcni.ConfListFromFile(cniconf.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "weft" || l.CNIVersion != "1.0.0" || len(l.Plugins) != 2 || l.Plugins[0].Network.Type != "weft-cni" || l.Plugins[1].Network.Type != "portmap" {
		t.Fatalf("loaded %+v", l)
	}
	var weft map[string]any
	if err := json.Unmarshal(l.Plugins[0].Bytes, &weft); err != nil {
		t.Fatal(err)
	}
	if weft["bridge"] != "weft0" || weft["dataDir"] != "/var/lib/weft" || weft["eventsSocket"] != "/run/weft/cni-events.sock" {
		t.Fatalf("weft-cni plugin config %v", weft)
	}
	var pm map[string]any
	json.Unmarshal(l.Plugins[1].Bytes, &pm)
	if caps, _ := pm["capabilities"].(map[string]any); caps["portMappings"] != true || pm["snat"] != true {
		t.Fatalf("portmap config %v", pm)
	}

	before, _ := os.Stat(cniconf.Path(dir))
	if changed, err := cniconf.Write(dir, c); err != nil || changed {
		t.Fatalf("rewrite of the same config = %v, %v; want no change", changed, err)
	}
	after, _ := os.Stat(cniconf.Path(dir))
	if !os.SameFile(before, after) {
		t.Fatal("the unchanged conflist was replaced")
	}

	c.Portmap = false
	if changed, err := cniconf.Write(dir, c); err != nil || !changed {
		t.Fatalf("Write without portmap = %v, %v", changed, err)
	}
	if l, err = libcni.ConfListFromFile(cniconf.Path(dir)); err != nil || len(l.Plugins) != 1 {
		t.Fatalf("without portmap: %v, %+v", err, l)
	}
	if err := cniconf.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := cniconf.Remove(dir); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("conf dir not empty after Remove: %v", entries)
	}
	if _, err := cniconf.Write(dir, cniconf.Config{Bridge: "weft0"}); err == nil {
		t.Fatal("Write accepted a config without data and run dirs")
	}
}

func TestWtaHasPluginNeedsAnExecutable(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "portmap"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "notexec"), []byte("x"), 0o644)
	if !cniconf.HasPlugin(dir, "portmap") || cniconf.HasPlugin(dir, "notexec") || cniconf.HasPlugin(dir, "missing") {
		t.Fatal("HasPlugin misjudged the bin dir")
	}
}
