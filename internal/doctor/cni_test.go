package doctor

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

// cniNode is a node's CNI dirs with the real weft-cni installed and the
// node state it allocates from: what checkCNI looks at.
func cniNode(t *testing.T) Options {
	t.Helper()
	root := t.TempDir()
	o := Options{DataDir: filepath.Join(root, "data"), ConfDir: filepath.Join(root, "net.d"), BinDir: filepath.Join(root, "bin"), RunDir: filepath.Join(root, "run")}
	install(t, names.PluginType, o.BinDir)
	if _, err := nodestate.Write(o.DataDir, nodestate.State{Node: "n1", Subnet: netip.MustParsePrefix("10.213.9.0/24"), MTU: 1450, Bridge: names.Bridge}); err != nil {
		t.Fatal(err)
	}
	return o
}

// install copies the binary `make build` made as name into binDir.
func install(t *testing.T, name, binDir string) {
	t.Helper()
	src, err := testbin.Path(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, name), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// writeConf writes the conflist the agent would, from what binDir holds.
func writeConf(t *testing.T, o Options) {
	t.Helper()
	if _, err := cniconf.Write(o.ConfDir, cniconf.Config{Bridge: names.Bridge, DataDir: o.DataDir, RunDir: o.RunDir, Portmap: cniconf.FindPortmap(o.BinDir)}); err != nil {
		t.Fatal(err)
	}
}

// With Weft's portmap chained the conflist offers CNI 1.1.0, and doctor
// sends STATUS through the whole chain, as the runtime does: it passes,
// and fails once the chained plugin is gone from the bin dir (every ADD
// would then fail too).
func TestCNIStatusThroughTheChain(t *testing.T) {
	o := cniNode(t)
	install(t, names.PortmapType, o.BinDir)
	writeConf(t, o)
	f := checkCNI(context.Background(), o)
	if f.Result != OK || !strings.Contains(f.Detail, "weft-cni → weft-portmap") || !strings.Contains(f.Detail, "CNI 1.1.0") {
		t.Fatalf("healthy chain: %+v", f)
	}
	if err := os.Remove(filepath.Join(o.BinDir, names.PortmapType)); err != nil {
		t.Fatal(err)
	}
	f = checkCNI(context.Background(), o)
	if f.Result != Fail || !strings.Contains(f.Detail, names.PortmapType) || !strings.Contains(f.Fix, "install-cni") {
		t.Fatalf("chain naming a missing weft-portmap: %+v", f)
	}
	t.Logf("doctor: %s\n  fix: %s", f.Detail, f.Fix)
}

// A node's older portmap holds the conflist below 1.1.0: weft-cni itself
// is fine, but runtimes send no GC or STATUS, and doctor says so and how
// to fix it.
func TestCNIStatusWarnsOfAnOldChainedPortmap(t *testing.T) {
	o := cniNode(t)
	old := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n"
	if err := os.WriteFile(filepath.Join(o.BinDir, "portmap"), []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	writeConf(t, o)
	f := checkCNI(context.Background(), o)
	if f.Result != Warn || !strings.Contains(f.Detail, "1.0.0") || !strings.Contains(f.Detail, "no GC") || !strings.Contains(f.Fix, names.PortmapType) {
		t.Fatalf("old portmap chained: %+v", f)
	}
	t.Logf("doctor: %s\n  fix: %s", f.Detail, f.Fix)
}
