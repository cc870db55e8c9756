// Package uninstall removes every trace of Weft from a node: the pods'
// host-side veths and the pod bridge, the VXLAN device (its neighbours and
// FDB entries go with it), every route carrying Weft's route protocol in
// every table, the nftables tables (masquerade and NetworkPolicy), the CNI
// network config and the plugin binaries install-cni installs (weft-cni,
// weft-portmap), and the data and run directories. The
// removal itself belongs to the packages that make each thing (bridge,
// datapath, firewall, netpolnft, cniconf), whose Remove functions `weft
// agent --cleanup` calls too; this package picks which to call and guards
// the directories it deletes whole. It never touches anything that is not
// Weft's, and can run any number of times.
package uninstall

import (
	"errors"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netpolnft"
)

// Run removes everything of Weft's in the calling thread's network
// namespace and in dirs. Every directory must be given: an empty one is a
// mistake (a flag set to nothing), not a request for the default. It
// carries on past a failure so that one stuck object does not keep the
// rest in place, and returns what it removed and every failure.
func Run(dirs names.Dirs) (removed []string, err error) {
	var errs []error
	for _, remove := range []func() ([]string, error){
		// The config first, so that the runtime sends no more pods.
		func() ([]string, error) { return cniconf.Remove(dirs.CNIConf) },
		firewall.Remove,
		netpolnft.Remove,
		datapath.Remove,
		func() ([]string, error) { return bridge.RemovePorts(names.Bridge, names.VethPrefix) },
		func() ([]string, error) { return bridge.Remove(names.Bridge) },
		func() ([]string, error) { return cniconf.RemovePlugins(dirs.CNIBin) },
		func() ([]string, error) { return removeDir(dirs.Data, dirs) },
		func() ([]string, error) { return removeDir(dirs.Run, dirs) },
	} {
		r, err := remove()
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
