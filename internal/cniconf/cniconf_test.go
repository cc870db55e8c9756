package cniconf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/cniconf"
)

func TestConfListIsValidCNIAndWrittenOnlyOnChange(t *testing.T) {
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
	if removed, err := cniconf.Remove(dir); err != nil || len(removed) != 1 {
		t.Fatalf("Remove = %v, %v; want the conflist removed", removed, err)
	}
	if removed, err := cniconf.Remove(dir); err != nil || len(removed) != 0 {
		t.Fatalf("second Remove = %v, %v; want nothing to do", removed, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("conf dir not empty after Remove: %v", entries)
	}
	if _, err := cniconf.Write(dir, cniconf.Config{Bridge: "weft0"}); err == nil {
		t.Fatal("Write accepted a config without data and run dirs")
	}
}

func TestHasPluginNeedsAnExecutable(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "portmap"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "notexec"), []byte("x"), 0o644)
	if !cniconf.HasPlugin(dir, "portmap") || cniconf.HasPlugin(dir, "notexec") || cniconf.HasPlugin(dir, "missing") {
		t.Fatal("HasPlugin misjudged the bin dir")
	}
}

// A runtime whose libcni knows CNI 1.1 (and so sends GC and STATUS) takes
// 1.1.0 from cniVersions; one that predates it reads cniVersion alone and
// gets 1.0.0, which weft-cni speaks too.
func TestConfListOffersEachRuntimeItsNewestVersion(t *testing.T) {
	dir := t.TempDir()
	if _, err := cniconf.Write(dir, cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft"}); err != nil {
		t.Fatal(err)
	}
	l, err := libcni.ConfListFromFile(cniconf.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if l.CNIVersion != "1.1.0" {
		t.Fatalf("libcni %s picked %s, want 1.1.0", "v1.3", l.CNIVersion)
	}
	var plugin map[string]any
	if err := json.Unmarshal(l.Plugins[0].Bytes, &plugin); err != nil {
		t.Fatal(err)
	}
	// An older reader: the conflist as libcni before cniVersions parsed
	// it (unknown keys ignored, cniVersion taken as is).
	b, err := os.ReadFile(cniconf.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	if old.CNIVersion != "1.0.0" || old.Name != "weft" || len(old.Plugins) != 1 || old.Plugins[0]["type"] != "weft-cni" {
		t.Fatalf("an older reader sees %+v", old)
	}
}

// With portmap chained, a version portmap does not speak is never offered:
// the runtime would pick it and every pod would fail.
func TestConfListOffersOnlyWhatPortmapSpeaks(t *testing.T) {
	for _, c := range []struct {
		versions []string
		want     string
	}{
		{nil, "1.0.0"},
		{[]string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"}, "1.0.0"},
		{[]string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}, "1.1.0"},
	} {
		dir := t.TempDir()
		if _, err := cniconf.Write(dir, cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft", Portmap: true, PortmapVersions: c.versions}); err != nil {
			t.Fatal(err)
		}
		l, err := libcni.ConfListFromFile(cniconf.Path(dir))
		if err != nil || l.CNIVersion != c.want {
			t.Errorf("portmap speaking %v: libcni picked %v (%v), want %s", c.versions, l, err, c.want)
		}
	}
}

// PluginVersions asks a real plugin, as a runtime would.
func TestPluginVersionsOfTheReferencePortmap(t *testing.T) {
	const ref = "/usr/lib/cni"
	if !cniconf.HasPlugin(ref, "portmap") {
		t.Skip("no reference portmap in " + ref)
	}
	vs := cniconf.PluginVersions(ref, "portmap")
	if len(vs) == 0 {
		t.Fatal("portmap reported no versions")
	}
	if got := cniconf.PluginVersions(t.TempDir(), "portmap"); got != nil {
		t.Fatalf("a missing plugin reported %v", got)
	}
}
