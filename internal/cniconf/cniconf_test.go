package cniconf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

func TestConfListIsValidCNIAndWrittenOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	c := cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft", Portmap: &cniconf.Portmap{Type: "weft-portmap"}}
	changed, err := cniconf.Write(dir, c)
	if err != nil || !changed {
		t.Fatalf("first Write = %v, %v", changed, err)
	}
	// libcni, as the runtimes use it, must load what was written.
	l, err := libcni.ConfListFromFile(cniconf.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "weft" || l.CNIVersion != "1.0.0" || len(l.Plugins) != 2 || l.Plugins[0].Network.Type != "weft-cni" || l.Plugins[1].Network.Type != "weft-portmap" {
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

	c.Portmap = nil
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
		pm := &cniconf.Portmap{Type: "portmap", Versions: c.versions}
		if _, err := cniconf.Write(dir, cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft", Portmap: pm}); err != nil {
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

// FindPortmap chains Weft's own portmap when install-cni put it there,
// else the node's, else none; the node's is never renamed or replaced.
func TestFindPortmapPrefersWeftsOwn(t *testing.T) {
	dir := t.TempDir()
	if pm := cniconf.FindPortmap(dir); pm != nil {
		t.Fatalf("an empty bin dir gave %+v", pm)
	}
	script := func(name, versions string) {
		b := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[" + versions + "]}'\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script("portmap", `"0.4.0","1.0.0"`)
	if pm := cniconf.FindPortmap(dir); pm == nil || pm.Type != "portmap" || strings.Join(pm.Versions, ",") != "0.4.0,1.0.0" {
		t.Fatalf("with the node's portmap only: %+v", pm)
	}
	script("weft-portmap", `"1.0.0","1.1.0"`)
	if pm := cniconf.FindPortmap(dir); pm == nil || pm.Type != "weft-portmap" || strings.Join(pm.Versions, ",") != "1.0.0,1.1.0" {
		t.Fatalf("with weft-portmap beside the node's portmap: %+v", pm)
	}
}

// With the portmap Weft ships (the real binary `make build` makes) beside
// a node's older one, the conflist chains Weft's and offers 1.1.0: a
// runtime whose libcni knows CNI 1.1 picks it, and sends GC and STATUS.
func TestConfListWithTheShippedPortmapOffers110(t *testing.T) {
	shipped, err := testbin.Path("weft-portmap")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "weft-portmap"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// A node's portmap that speaks up to 1.0.0, as Debian's does.
	old := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n"
	if err := os.WriteFile(filepath.Join(bin, "portmap"), []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	pm := cniconf.FindPortmap(bin)
	if pm == nil || pm.Type != "weft-portmap" || !slices.Contains(pm.Versions, "1.1.0") {
		t.Fatalf("FindPortmap = %+v, want weft-portmap speaking 1.1.0", pm)
	}
	conf := t.TempDir()
	if _, err := cniconf.Write(conf, cniconf.Config{Bridge: "weft0", DataDir: "/var/lib/weft", RunDir: "/run/weft", Portmap: pm}); err != nil {
		t.Fatal(err)
	}
	l, err := libcni.ConfListFromFile(cniconf.Path(conf))
	if err != nil {
		t.Fatal(err)
	}
	if l.CNIVersion != "1.1.0" || len(l.Plugins) != 2 || l.Plugins[1].Network.Type != "weft-portmap" {
		t.Fatalf("libcni loaded version %s, plugins %d: %s", l.CNIVersion, len(l.Plugins), l.Bytes)
	}
}
