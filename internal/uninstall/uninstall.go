// Package uninstall takes Weft off a node, in one list of removals that
// both ways off share: Run removes every trace of Weft (`weft uninstall`):
// the pods' host-side veths and the pod bridge, the VXLAN device (its
// neighbours and FDB entries go with it), every route carrying Weft's
// route protocol in every table, the nftables tables (masquerade, guards
// and NetworkPolicy), the CNI network config and the plugin binaries install-cni installs
// (weft-cni, weft-portmap), and the
// data and run directories; AgentMade removes what the agent made (`weft
// agent --cleanup`), keeping the pods' veths, the plugin and its
// addresses. The removal itself belongs to the packages that make each
// thing (bridge, datapath, firewall, netpolnft, cniconf, nodestate); this
// package says which to call, in which order, and guards the directories
// it deletes whole. It never touches anything that is not Weft's, and can
// run any number of times.
package uninstall

import (
	"errors"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/nodestate"
)

// scope says which way off a node runs a removal.
type scope int

const (
	// both: what the agent made, removed by uninstall and --cleanup.
	both scope = iota
	// uninstallOnly: what --cleanup keeps (the pods' veths, the plugin,
	// its addresses and the agent's sockets).
	uninstallOnly
	// cleanupOnly: what uninstall removes with a whole directory.
	cleanupOnly
)

// removals are every removal, in the order they run.
var removals = []struct {
	scope  scope
	remove func(names.Dirs) ([]string, error)
}{
	// The config first, so that the runtime sends no more pods.
	{both, func(d names.Dirs) ([]string, error) { return cniconf.Remove(d.CNIConf) }},
	{both, func(names.Dirs) ([]string, error) { return firewall.Remove() }},
	{both, func(names.Dirs) ([]string, error) { return netpolnft.Remove() }},
	{both, func(names.Dirs) ([]string, error) { return datapath.Remove() }},
	{uninstallOnly, func(names.Dirs) ([]string, error) { return bridge.RemovePorts(names.Bridge, names.VethPrefix) }},
	{both, func(names.Dirs) ([]string, error) { return bridge.Remove(names.Bridge) }},
	{uninstallOnly, func(d names.Dirs) ([]string, error) { return cniconf.RemovePlugins(d.CNIBin) }},
	// Without its node state the plugin refuses new pods: it has no
	// subnet to give them.
	{cleanupOnly, func(d names.Dirs) ([]string, error) { return nodestate.Remove(d.Data) }},
	{uninstallOnly, func(d names.Dirs) ([]string, error) { return removeDir(d.Data, d) }},
	{uninstallOnly, func(d names.Dirs) ([]string, error) { return removeDir(d.Run, d) }},
}

// Run removes everything of Weft's in the calling thread's network
// namespace and in dirs. Every directory must be given: an empty one is a
// mistake (a flag set to nothing), not a request for the default. It
// carries on past a failure so that one stuck object does not keep the
// rest in place, and returns what it removed and every failure.
func Run(dirs names.Dirs) (removed []string, err error) { return run(dirs, cleanupOnly) }

// AgentMade removes what the agent made on the node (its CNI config, the
// nftables tables, the VXLAN device and Weft's routes, the bridge, the
// node state) and keeps the pods' veths, the plugin and its addresses; it
// carries on past a failure as Run does.
func AgentMade(dirs names.Dirs) (removed []string, err error) { return run(dirs, uninstallOnly) }

// run runs every removal but those of scope skip.
func run(dirs names.Dirs, skip scope) (removed []string, err error) {
	var errs []error
	for _, r := range removals {
		if r.scope == skip {
			continue
		}
		done, err := r.remove(dirs)
		removed = append(removed, done...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
