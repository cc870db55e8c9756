package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/internal/uninstall"
)

// Cleanup removes everything the agent made on this node: the CNI config
// (first, so that the runtime sends no more pods), the nftables tables
// (masquerade and NetworkPolicy), the VXLAN device and Weft's routes, the
// bridge and the node state (uninstall.AgentMade, from the list `weft
// uninstall` runs too). The pods' veths and the plugin's IPAM data are
// kept. With a datastore in cfg it then removes the node's record and
// lease, so that the peers drop their routes to it. It goes on past a
// failing step and returns what it removed and every failure.
func Cleanup(ctx context.Context, cfg Config) ([]string, error) {
	if cfg.NodeName == "" && cfg.Store != nil {
		return nil, errors.New("a node name is required to remove the node from the datastore")
	}
	removed, err := uninstall.AgentMade(cfg.Dirs.WithDefaults())
	errs := []error{err}
	if cfg.Store != nil {
		if err := cfg.Store.Remove(ctx, cfg.NodeName); err != nil {
			errs = append(errs, fmt.Errorf("remove node %s from the datastore: %w", cfg.NodeName, err))
		} else {
			removed = append(removed, "node "+cfg.NodeName+" from the datastore")
		}
	}
	return removed, errors.Join(errs...)
}
