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
	register("install-cni", "install the weft-cni and weft-portmap plugins and the CNI network config on this node (the DaemonSet's init container)", runInstallCNI)
}

// runInstallCNI copies the plugins into the CNI bin dir and writes the
// conflist, each atomically (a runtime may exec a plugin or read the
// conf dir at any moment) and only when different, so that rerunning it
// on every pod start changes nothing that is already right. The plugins
// go first: the conflist never names a binary that is not there yet.
func runInstallCNI(args []string) error {
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	self, _ := os.Executable()
	plugin := fs.String("plugin", filepath.Join(filepath.Dir(self), names.PluginType), "the weft-cni binary to install")
	portmap := fs.String("portmap", filepath.Join(filepath.Dir(self), names.PortmapType),
		"the portmap binary to install as "+names.PortmapType+" and chain for hostPort (empty: install none; a portmap the node has is chained instead)")
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
	// Every source is read before anything is written: a bad one leaves
	// the node as it was.
	bins := []pluginFile{{*plugin, names.PluginType}}
	if *portmap != "" {
		bins = append(bins, pluginFile{*portmap, names.PortmapType})
	}
	data := make([][]byte, len(bins))
	for i, b := range bins {
		var err error
		if data[i], err = readPlugin(b.src, b.name); err != nil {
			return err
		}
	}
	for i, b := range bins {
		dst := filepath.Join(*binDir, b.name)
		changed, err := atomicfile.Write(dst, data[i], 0o755)
		if err != nil {
			return fmt.Errorf("install %s: %w", b.name, err)
		}
		installReport(changed, dst)
	}
	// The same config the agent writes, so the two never flip it back and
	// forth.
	changed, err := cniconf.Write(*confDir, cniconf.Config{
		Bridge: names.Bridge, DataDir: *dataDir, RunDir: *runDir,
		Portmap: cniconf.FindPortmap(*binDir),
	})
	if err != nil {
		return err
	}
	installReport(changed, cniconf.Path(*confDir))
	return nil
}

// pluginFile is a binary to install: from src, as name in the bin dir.
type pluginFile struct{ src, name string }

// readPlugin reads the binary at src that is to be installed as name.
func readPlugin(src, name string) ([]byte, error) {
	bin, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("read the %s plugin: %w", name, err)
	}
	fi, err := os.Stat(src)
	if err != nil || !fi.Mode().IsRegular() || len(bin) == 0 {
		return nil, fmt.Errorf("the %s plugin %s is not a regular, non-empty file", name, src)
	}
	return bin, nil
}

func installReport(changed bool, path string) {
	if changed {
		fmt.Printf("installed %s\n", path)
	} else {
		fmt.Printf("%s is up to date\n", path)
	}
}
