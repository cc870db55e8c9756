package cniconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The agent asks the chained plugin for its versions at every resync: the
// plugin runs once, and again only when its binary is replaced.
func TestPluginVersionsAsksOncePerBinary(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	plugin := filepath.Join(dir, "portmap")
	write := func(versions string) {
		script := "#!/bin/sh\necho x >> " + calls + "\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[" + versions + "]}'\n"
		if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	write(`"0.4.0","1.0.0"`)
	for range 3 {
		if v := PluginVersions(dir, "portmap"); strings.Join(v, ",") != "0.4.0,1.0.0" {
			t.Fatalf("versions %v", v)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("the plugin ran %d times for three asks of one binary", n)
	}
	// A new binary (another size and time) is asked again.
	write(`"0.4.0","1.0.0","1.1.0"`)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(plugin, later, later); err != nil {
		t.Fatal(err)
	}
	if v := PluginVersions(dir, "portmap"); strings.Join(v, ",") != "0.4.0,1.0.0,1.1.0" {
		t.Fatalf("versions after the upgrade %v", v)
	}
	if n := count(); n != 2 {
		t.Fatalf("the plugin ran %d times, want 2", n)
	}
}
