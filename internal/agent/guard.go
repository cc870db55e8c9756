package agent

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
)

// The guards (package firewall) need two lists kept exact: the peers the
// VXLAN guard lets in, from each reconcile, and the pods the pod guard
// lets out, from the node itself. The CNI plugin adds each new pod at ADD,
// so that its first packet passes; the agent's sync adds the pods made
// before the guard existed (or while its table was being replaced) and
// removes those whose veth is gone.

// syncPodGuard makes the pod guard's set hold exactly the pods that have
// both an IPAM lease and their veth on this node.
func (a *Agent) syncPodGuard() error {
	ch, err := firewall.SyncPods(a.localPods)
	if err != nil {
		return fmt.Errorf("sync the pod guard: %w", err)
	}
	if ch.Added+ch.Removed > 0 {
		a.log.Info("pod guard synced", "added", ch.Added, "removed", ch.Removed)
	}
	return nil
}

// localPods is every pod of this node that has both an IPAM lease and its
// veth.
func (a *Agent) localPods() ([]firewall.Pod, error) {
	veths := map[string]bool{}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; l.Type() == "veth" && strings.HasPrefix(n, names.VethPrefix) {
			veths[n] = true
		}
	}
	leases, err := ipam.OpenForRelease(ipam.Dir(a.cfg.Dirs.Data, names.NetworkName)).Leases()
	if err != nil {
		return nil, fmt.Errorf("read the pods' leases: %w", err)
	}
	var pods []firewall.Pod
	for _, l := range leases {
		veth := names.HostVethName(l.ContainerID, l.IfName)
		if veths[veth] {
			pods = append(pods, firewall.Pod{Veth: veth, MAC: names.PodMAC(l.Addr), IP: l.Addr})
		}
	}
	return pods, nil
}

// syncVXLANGuard lets in VXLAN from exactly the peers the datapath
// programs (records it refused get nothing), each for its own subnet.
func (a *Agent) syncVXLANGuard(peers []datapath.PeerPath) (firewall.Changes, error) {
	var fp []firewall.Peer
	for _, p := range peers {
		if p.Refused == "" {
			fp = append(fp, firewall.Peer{UnderlayIP: p.UnderlayIP, Subnet: p.Subnet})
		}
	}
	ch, err := firewall.SyncPeers(fp)
	if err != nil {
		return ch, fmt.Errorf("sync the VXLAN guard: %w", err)
	}
	return ch, nil
}

// readDrops hands the guards' drop counters to the metrics.
func (a *Agent) readDrops() {
	m := a.cfg.Metrics
	if m == nil {
		return
	}
	d, err := firewall.Drops()
	if err != nil {
		a.log.Debug("cannot read the firewall's drop counters", "err", err)
		return
	}
	m.SetFirewallDrops(d)
}
