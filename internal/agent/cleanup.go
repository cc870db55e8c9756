package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// Cleanup removes everything the agent made on this node: the CNI config
// (first, so that the runtime sends no more pods), the nftables tables
// (masquerade and NetworkPolicy), the VXLAN device and Weft's routes, the
// bridge and the node state. The pods'
// veths and the plugin's IPAM data are kept (weft uninstall removes those
// too, with the same Remove functions). With a datastore in cfg it then
// removes the node's record and lease, so that the peers drop their routes
// to it. It goes on past a failing step and returns what it removed and
// every failure.
func Cleanup(ctx context.Context, cfg Config) ([]string, error) {
	if cfg.NodeName == "" && cfg.Store != nil {
		return nil, errors.New("a node name is required to remove the node from the datastore")
	}
	dirs := cfg.Dirs.WithDefaults()
	var removed []string
	var errs []error
	for _, remove := range []func() ([]string, error){
		func() ([]string, error) { return cniconf.Remove(dirs.CNIConf) },
		firewall.Remove,
		removePolicy,
		datapath.Remove,
		func() ([]string, error) { return bridge.Remove(names.Bridge) },
		func() ([]string, error) { return nodestate.Remove(dirs.Data) },
	} {
		r, err := remove()
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Store != nil {
		if err := cfg.Store.Remove(ctx, cfg.NodeName); err != nil {
			errs = append(errs, fmt.Errorf("remove node %s from the datastore: %w", cfg.NodeName, err))
		} else {
			removed = append(removed, "node "+cfg.NodeName+" from the datastore")
		}
	}
	return removed, errors.Join(errs...)
}
