// Package nodestate is the small file through which the agent tells the CNI
// plugin about its node: the pod subnet, the MTU pods must use and the
// bridge. The plugin never talks to the datastore; it reads this file.
package nodestate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/ipam"
)

// FileName is the state file's name inside the data directory.
const FileName = "node.json"

// State is the node's network as the agent has set it up.
type State struct {
	Node        string       `json:"node"`
	Subnet      netip.Prefix `json:"subnet"`
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	MTU         int          `json:"mtu"`
	Bridge      string       `json:"bridge"`
	Backend     string       `json:"backend"`
	// LeaseExpires is when the node's hold on Subnet lapses unless the
	// agent renews it (etcd mode; zero where subnets do not lapse, as a
	// Kubernetes podCIDR). Past it, another node may hold the subnet, so
	// the plugin gives no pod an address of it until the agent renews.
	LeaseExpires time.Time `json:"leaseExpires,omitzero"`
}

// Lapsed reports whether the node's lease on its subnet has lapsed at now.
func (s State) Lapsed(now time.Time) bool {
	return !s.LeaseExpires.IsZero() && now.After(s.LeaseExpires)
}

// Gateway is the address the bridge holds, with the subnet's length.
func (s State) Gateway() netip.Prefix {
	return netip.PrefixFrom(ipam.Gateway(s.Subnet), s.Subnet.Bits())
}

// Path is where the state lives for a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Read loads the state from dataDir. A missing file is reported with an
// error that wraps os.ErrNotExist: the agent has not run yet.
func Read(dataDir string) (State, error) {
	var s State
	b, err := os.ReadFile(Path(dataDir))
	if err != nil {
		return s, fmt.Errorf("read node state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse node state %s: %w", Path(dataDir), err)
	}
	if !s.Subnet.IsValid() {
		return s, fmt.Errorf("node state %s has no subnet", Path(dataDir))
	}
	return s, nil
}

// Write stores the state atomically and only when it changed.
func Write(dataDir string, s State) (bool, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return false, err
	}
	return atomicfile.Write(Path(dataDir), append(b, '\n'), 0o644)
}
