// Package cniconf renders the CNI network configuration list that the agent
// writes into the runtime's CNI conf dir (names.ConfListName), and writes it
// atomically and only when it changes: kubelet and the runtimes watch that
// directory, and a node reports its network ready once the file is there.
package cniconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	// Portmap chains the reference portmap plugin (hostPort support); set
	// it only when the plugin is installed (see HasPlugin).
	Portmap bool
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
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

// Render returns the conflist for c.
func Render(c Config) ([]byte, error) {
	if c.Bridge == "" || c.DataDir == "" || c.RunDir == "" {
		return nil, fmt.Errorf("CNI config needs a bridge, a data dir and a run dir (got %+v)", c)
	}
	l := confList{CNIVersion: "1.0.0", Name: names.NetworkName, Plugins: []any{
		weftPlugin{Type: names.PluginType, Bridge: c.Bridge, DataDir: c.DataDir, EventsSocket: filepath.Join(c.RunDir, EventsSocket)},
	}}
	if c.Portmap {
		l.Plugins = append(l.Plugins, portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: true})
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

// Remove deletes the conflist; a missing one is not an error.
func Remove(confDir string) error {
	if err := os.Remove(Path(confDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove CNI config: %w", err)
	}
	return nil
}

// HasPlugin reports whether binDir holds an executable plugin named name.
func HasPlugin(binDir, name string) bool {
	fi, err := os.Stat(filepath.Join(binDir, name))
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
