package agent

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/version"
)

// setup makes the node match its lease and returns its datapath and the
// record to publish. Everything here is idempotent and leaves what is
// already right alone, so a restarted agent disturbs no pod.
func (a *Agent) setup(l store.Lease, ip netip.Addr) (*datapath.Datapath, cluster.Node, error) {
	dp, err := datapath.New(datapath.Config{Node: a.cfg.NodeName, Backend: a.cfg.Backend, Subnet: l.Subnet, UnderlayIP: ip,
		ClusterCIDR: a.cfg.ClusterCIDR, Protected: a.cfg.Protected, ProcSysNet: a.cfg.ProcSysNet})
	if err != nil {
		return nil, cluster.Node{}, err
	}
	mtu, err := podMTU(a.cfg, dp.UnderlayLink(), dp.UnderlayMTU(), dp.PodMTU())
	if err != nil {
		dp.Close()
		return nil, cluster.Node{}, err
	}
	a.update(func(s *Status) {
		s.UnderlayIP, s.UnderlayLink, s.MTU = ip, dp.UnderlayLink(), mtu
	})
	if err := a.ensureNode(dp, l); err != nil {
		dp.Close()
		return nil, cluster.Node{}, err
	}
	mac, err := dp.EnsureDevice()
	if err != nil {
		dp.Close()
		return nil, cluster.Node{}, err
	}
	rec := cluster.Node{Name: a.cfg.NodeName, UnderlayIP: ip, Subnet: l.Subnet, Backend: a.cfg.Backend,
		ProbePort: a.cfg.ProbePort, Version: version.Version}
	if mac != nil {
		rec.VTEPMAC = mac.String()
	}
	a.update(func(s *Status) { s.VTEPMAC = rec.VTEPMAC })
	a.log.Info("node set up", "underlay_ip", ip, "underlay_link", dp.UnderlayLink(), "mtu", mtu,
		"bridge", names.Bridge, "vtep_mac", rec.VTEPMAC)
	return dp, rec, nil
}

// leaseExpires is when the lease the node holds now lapses: l's, or a
// later renewal's (the main loop keeps the lease it started with; the
// renewals go to the status).
func (a *Agent) leaseExpires(l store.Lease) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.status.Lease; cur != nil && cur.Subnet == l.Subnet && cur.Expires.After(l.Expires) {
		return cur.Expires
	}
	return l.Expires
}

// stampLease writes a renewed lease's expiry into node.json, at once:
// the plugin refuses addresses of a subnet whose lease it sees lapsed.
func (a *Agent) stampLease(l store.Lease) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	st, err := nodestate.Read(a.cfg.Dirs.Data)
	if err != nil || st.Subnet != l.Subnet {
		return err // not written yet (setup writes it) or another subnet
	}
	st.LeaseExpires = a.leaseExpires(l)
	_, err = nodestate.Write(a.cfg.Dirs.Data, st)
	return err
}

// ensureNode makes the node state, bridge, forwarding, nftables table and
// CNI config right; the conflist comes last, because the runtime starts
// sending pods once it is there.
func (a *Agent) ensureNode(dp *datapath.Datapath, l store.Lease) error {
	mtu, err := podMTU(a.cfg, dp.UnderlayLink(), dp.UnderlayMTU(), dp.PodMTU())
	if err != nil {
		return err
	}
	a.stateMu.Lock()
	st := nodestate.State{Node: a.cfg.NodeName, Subnet: l.Subnet, ClusterCIDR: a.cfg.ClusterCIDR,
		MTU: mtu, Bridge: names.Bridge, Backend: string(a.cfg.Backend), LeaseExpires: a.leaseExpires(l)}
	changed, err := nodestate.Write(a.cfg.Dirs.Data, st)
	a.stateMu.Unlock()
	if err != nil {
		return fmt.Errorf("write node state: %w", err)
	}
	if changed {
		a.log.Info("node state written", "path", nodestate.Path(a.cfg.Dirs.Data), "subnet", st.Subnet, "mtu", st.MTU)
	}
	a.stateWritten.Store(true)
	if _, err := bridge.Ensure(names.Bridge, st.Gateway(), st.MTU); err != nil {
		return fmt.Errorf("set up bridge %s: %w", names.Bridge, err)
	}
	if err := enableForwarding(a.cfg.ProcSysNet); err != nil {
		return err
	}
	if err := firewall.EnsureWithPods(a.cfg.ClusterCIDR, a.localPods); err != nil {
		return err
	}
	if err := a.syncPodGuard(); err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.Dirs.Run, 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	changed, err = cniconf.Write(a.cfg.Dirs.CNIConf, cniconf.Config{Bridge: names.Bridge, DataDir: a.cfg.Dirs.Data,
		RunDir: a.cfg.Dirs.Run, Portmap: cniconf.FindPortmap(a.cfg.Dirs.CNIBin)})
	if err != nil {
		return err
	}
	if changed {
		a.log.Info("CNI config written", "path", cniconf.Path(a.cfg.Dirs.CNIConf))
	}
	return nil
}

// podMTU is the pods' MTU: the configured one, checked against what the
// underlay link carries, or else derived, the MTU the datapath derives
// from the link (less the VXLAN overhead when VXLAN may be used).
func podMTU(cfg Config, link string, linkMTU, derived int) (int, error) {
	vxlan := derived < linkMTU
	if cfg.MTU == 0 {
		if derived < cluster.MinMTU {
			return 0, fmt.Errorf("underlay %s has MTU %d: too small for pods (%d with VXLAN; at least %d needed)", link, linkMTU, derived, cluster.MinMTU)
		}
		return derived, nil
	}
	if cfg.MTU > derived {
		if vxlan {
			return 0, fmt.Errorf("pod MTU %d does not fit the underlay: backend %s may carry pod packets in VXLAN, so the pod MTU can be at most %s's MTU %d - %d = %d (lower --mtu, or raise %s's MTU)", cfg.MTU, cfg.Backend, link, linkMTU, linkMTU-derived, derived, link)
		}
		return 0, fmt.Errorf("pod MTU %d does not fit the underlay: it can be at most %s's MTU %d (lower --mtu, or raise %s's MTU)", cfg.MTU, link, linkMTU, link)
	}
	return cfg.MTU, nil
}

// checkMTU fails early, before a lease is taken, on a pod MTU that the
// underlay link holding ip cannot carry.
func checkMTU(cfg Config, ip netip.Addr) error {
	l, err := datapath.LinkOf(ip)
	if err != nil {
		return err
	}
	linkMTU := l.Attrs().MTU
	derived := cfg.Backend.PodMTU(linkMTU)
	_, err = podMTU(cfg, l.Attrs().Name, linkMTU, derived)
	return err
}

// underlayIP is the configured underlay address, or the default route's
// interface's, checked to be on an interface of this node.
func underlayIP(ip netip.Addr) (netip.Addr, error) {
	if !ip.IsValid() {
		var err error
		if ip, err = datapath.DefaultUnderlayIP(); err != nil {
			return ip, err
		}
	}
	if _, err := datapath.LinkOf(ip); err != nil {
		return ip, err
	}
	return ip, nil
}

// enableForwarding turns on IPv4 forwarding in the agent's network
// namespace: pods' traffic is routed through the node. procSysNet is where
// the namespace's net sysctls are: /proc/sys/net, or a writable bind of it
// when the agent runs in a container whose /proc/sys is read-only.
func enableForwarding(procSysNet string) error {
	if procSysNet == "" {
		procSysNet = "/proc/sys/net"
	}
	path := filepath.Join(procSysNet, "ipv4", "ip_forward")
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding (%s): %w", path, err)
	}
	return nil
}
