package agent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// Cleanup removes everything Weft made on this node: the CNI config (first,
// so that the runtime sends no more pods), the nftables table, Weft's
// routes, the VXLAN device, the bridge and the node state. The plugin's
// IPAM data in the data dir is kept. With a datastore in cfg it then
// removes the node's record and lease, so that the peers drop their routes
// to it. It goes on past a failing step and returns every failure.
func Cleanup(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" && cfg.Store != nil {
		return errors.New("a node name is required to remove the node from the datastore")
	}
	cfg.defaultDirs()
	errs := []error{
		cniconf.Remove(cfg.CNIConfDir),
		firewall.Remove(),
		datapath.Cleanup(),
		removeBridge(),
	}
	if err := os.Remove(nodestate.Path(cfg.DataDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove node state: %w", err))
	}
	if cfg.Store != nil {
		if err := cfg.Store.Remove(ctx, cfg.NodeName); err != nil {
			errs = append(errs, fmt.Errorf("remove node %s from the datastore: %w", cfg.NodeName, err))
		}
	}
	return errors.Join(errs...)
}

func removeBridge() error {
	l, err := netlink.LinkByName(names.Bridge)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", names.Bridge, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s is a %s, not Weft's bridge; left alone", names.Bridge, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove bridge %s: %w", names.Bridge, err)
	}
	return nil
}
