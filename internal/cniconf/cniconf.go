// Package cniconf renders the CNI network configuration list that the agent
// writes into the runtime's CNI conf dir (names.ConfListName), and writes it
// atomically and only when it changes: kubelet and the runtimes watch that
// directory, and a node reports its network ready once the file is there.
package cniconf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/names"
)

// EventsSocket is the socket, relative to the run dir, on which the agent
// hears of pods the plugin added or deleted.
const EventsSocket = "cni-events.sock"

// Config is what goes into the conflist.
type Config struct {
	Bridge  string // the node bridge, names.Bridge
	DataDir string // where the plugin finds the node state and its IPAM data
	RunDir  string // the agent's run dir, holding the events socket
	// Portmap is the portmap plugin chained after weft-cni (hostPort
	// support), nil for none; FindPortmap picks it from the bin dir.
	Portmap *Portmap
}

// Portmap is a portmap plugin in the CNI bin dir.
type Portmap struct {
	// Type is its binary's name, which the conflist names.
	Type string
	// Versions are the CNI versions it speaks (PluginVersions). Unknown,
	// the conflist offers none newer than 1.0.0: a runtime picking a
	// version portmap lacks would fail every pod.
	Versions []string
}

// portmapTypes are the portmaps FindPortmap looks for, in order: Weft's
// own, which install-cni ships and which speaks CNI 1.1.0, then the
// reference name, for nodes where Weft was installed without its image
// (the node's portmap is chained as it is, never replaced).
var portmapTypes = []string{names.PortmapType, "portmap"}

// FindPortmap returns the portmap to chain from binDir, with the CNI
// versions it speaks, or nil when binDir holds none.
func FindPortmap(binDir string) *Portmap {
	for _, t := range portmapTypes {
		if HasPlugin(binDir, t) {
			return &Portmap{Type: t, Versions: PluginVersions(binDir, t)}
		}
	}
	return nil
}

// Versions are the CNI spec versions the conflist offers, oldest first.
// A runtime whose libcni reads cniVersions (1.1.0 and later) takes the
// newest it supports, and only from 1.1.0 on sends GC and STATUS; an older
// one reads cniVersion alone.
var Versions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// legacyVersion is cniVersion, for runtimes that predate cniVersions
// (containerd 1.6, podman 4.3): the newest they know.
const legacyVersion = "1.0.0"

// offered is Versions, less those a chained portmap does not speak.
func offered(c Config) []string {
	if c.Portmap == nil {
		return Versions
	}
	speaks := map[string]bool{}
	for _, v := range c.Portmap.Versions {
		speaks[v] = true
	}
	var out []string
	for _, v := range Versions {
		if speaks[v] || (len(c.Portmap.Versions) == 0 && v <= legacyVersion) {
			out = append(out, v)
		}
	}
	return out
}

type weftPlugin struct {
	Type         string `json:"type"`
	Bridge       string `json:"bridge"`
	DataDir      string `json:"dataDir"`
	EventsSocket string `json:"eventsSocket"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	SNAT         bool            `json:"snat"`
}

type confList struct {
	CNIVersion  string   `json:"cniVersion"`
	CNIVersions []string `json:"cniVersions,omitempty"`
	Name        string   `json:"name"`
	Plugins     []any    `json:"plugins"`
}

// Render returns the conflist for c.
func Render(c Config) ([]byte, error) {
	if c.Bridge == "" || c.DataDir == "" || c.RunDir == "" {
		return nil, fmt.Errorf("CNI config needs a bridge, a data dir and a run dir (got %+v)", c)
	}
	l := confList{CNIVersion: legacyVersion, CNIVersions: offered(c), Name: names.NetworkName, Plugins: []any{
		weftPlugin{Type: names.PluginType, Bridge: c.Bridge, DataDir: c.DataDir, EventsSocket: filepath.Join(c.RunDir, EventsSocket)},
	}}
	if c.Portmap != nil {
		l.Plugins = append(l.Plugins, portmapPlugin{Type: c.Portmap.Type, Capabilities: map[string]bool{"portMappings": true}, SNAT: true})
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Path is where the conflist lives in confDir.
func Path(confDir string) string { return filepath.Join(confDir, names.ConfListName) }

// Write renders c into confDir, only when the content changes, and reports
// whether it did.
func Write(confDir string, c Config) (bool, error) {
	b, err := Render(c)
	if err != nil {
		return false, err
	}
	changed, err := atomicfile.Write(Path(confDir), b, 0o644)
	if err != nil {
		return false, fmt.Errorf("write CNI config: %w", err)
	}
	return changed, nil
}

// Remove deletes Weft's conflist from confDir, so that the runtime sends
// no more pods to Weft, and returns what it removed; a missing one is not
// an error. Other networks' configs stay.
func Remove(confDir string) ([]string, error) {
	return removeFile(confDir, names.ConfListName)
}

// RemovePlugins deletes the plugin binaries Weft installs (weft-cni and
// weft-portmap) from binDir and returns what it removed; a missing one is
// not an error. Other plugins, a portmap of the node's among them, stay.
func RemovePlugins(binDir string) ([]string, error) {
	var removed []string
	var errs []error
	for _, name := range []string{names.PluginType, names.PortmapType} {
		r, err := removeFile(binDir, name)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func removeFile(dir, name string) ([]string, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("refusing to remove %s from %q: not an absolute directory", name, dir)
	}
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("remove %s: %w", p, err)
	}
	return []string{p}, nil
}

// HasPlugin reports whether binDir holds an executable plugin named name.
func HasPlugin(binDir, name string) bool {
	fi, err := os.Stat(filepath.Join(binDir, name))
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// PluginVersions asks the plugin name in binDir which CNI versions it
// speaks (CNI_COMMAND=VERSION), as a runtime would; nil when it cannot
// say. The agent asks at every resync and repair: the answer is kept for
// as long as the binary's size and modification time stay the same, so
// the plugin runs again only when it was replaced. One answer is kept:
// the agent asks about one plugin, the portmap it chains.
func PluginVersions(binDir, name string) []string {
	path := filepath.Join(binDir, name)
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return nil
	}
	key := versionKey{path, fi.Size(), fi.ModTime()}
	versionMu.Lock()
	v, ok := versionCache[key]
	versionMu.Unlock()
	if ok {
		return v
	}
	v = askVersions(binDir, name)
	versionMu.Lock()
	versionCache = map[versionKey][]string{key: v}
	versionMu.Unlock()
	return v
}

type versionKey struct {
	path  string
	size  int64
	mtime time.Time
}

var (
	versionMu    sync.Mutex
	versionCache map[versionKey][]string
)

func askVersions(binDir, name string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name))
	cmd.Env = []string{"CNI_COMMAND=VERSION", "CNI_PATH=" + binDir}
	cmd.Stdin = strings.NewReader(`{"cniVersion":"` + legacyVersion + `"}`)
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if json.Unmarshal(out, &v) != nil {
		return nil
	}
	return v.Supported
}
