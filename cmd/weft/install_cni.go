package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/names"
)

func init() {
	register("install-cni", "install the weft-cni plugin and the CNI network config on this node (the DaemonSet's init container)", runInstallCNI)
}

// runInstallCNI copies the plugin into the CNI bin dir and writes the
// conflist, each atomically (a runtime may exec the plugin or read the
// conf dir at any moment) and only when different, so that rerunning it
// on every pod start changes nothing that is already right.
func runInstallCNI(args []string) error {
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	self, _ := os.Executable()
	plugin := fs.String("plugin", filepath.Join(filepath.Dir(self), names.PluginType), "the weft-cni binary to install")
	binDir := fs.String("cni-bin-dir", names.CNIBinDir, "CNI plugin directory to install into")
	confDir := fs.String("cni-conf-dir", names.CNIConfDir, "CNI config directory to write "+names.ConfListName+" into")
	dataDir := fs.String("data-dir", names.DataDir, "the agent's data directory, as the plugin will see it on the node")
	runDir := fs.String("run-dir", names.RunDir, "the agent's run directory, as the plugin will see it on the node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for flagName, p := range map[string]string{"cni-bin-dir": *binDir, "cni-conf-dir": *confDir, "data-dir": *dataDir, "run-dir": *runDir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("--%s %q is not an absolute path", flagName, p)
		}
	}
	bin, err := os.ReadFile(*plugin)
	if err != nil {
		return fmt.Errorf("read the plugin: %w", err)
	}
	fi, err := os.Stat(*plugin)
	if err != nil || !fi.Mode().IsRegular() || len(bin) == 0 {
		return fmt.Errorf("the plugin %s is not a regular, non-empty file", *plugin)
	}
	dst := filepath.Join(*binDir, names.PluginType)
	changed, err := atomicfile.Write(dst, bin, 0o755)
	if err != nil {
		return fmt.Errorf("install the plugin: %w", err)
	}
	installReport(changed, dst)
	// The same config the agent writes, so the two never flip it back and
	// forth (portmap is chained when the runtime's plugins include it).
	changed, err = cniconf.Write(*confDir, cniconf.Config{
		Bridge: names.Bridge, DataDir: *dataDir, RunDir: *runDir,
		Portmap:         cniconf.HasPlugin(*binDir, "portmap"),
		PortmapVersions: cniconf.PluginVersions(*binDir, "portmap"),
	})
	if err != nil {
		return err
	}
	installReport(changed, cniconf.Path(*confDir))
	return nil
}

func installReport(changed bool, path string) {
	if changed {
		fmt.Printf("installed %s\n", path)
	} else {
		fmt.Printf("%s is up to date\n", path)
	}
}
