// Package agent is Weft's node agent: it leases the node's pod subnet from
// the datastore, sets the node up (node state for the CNI plugin, bridge,
// IP forwarding, CNI config, nftables table, VXLAN device), publishes how
// the node is reached, and keeps the datapath equal to what the peers'
// records ask for, reconciling on every change and periodically to repair
// drift. It serves health, and reports its state through Status.
//
// The kernel holds the datapath, not the agent: the agent never flushes
// anything on start, a stop leaves everything in place (pods keep talking
// while it restarts) and only Cleanup removes what Weft made.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/store"
)

// Config configures one node's agent.
type Config struct {
	NodeName    string
	Backend     cluster.Backend
	ClusterCIDR netip.Prefix
	// Protected are prefixes that no peer's record may get a route to,
	// beside the node's own addresses and connected networks: the
	// datastore's addresses (see EndpointPrefixes).
	Protected []netip.Prefix
	// UnderlayIP is the node's address between nodes; zero means the IPv4
	// address of the interface that holds the default route.
	UnderlayIP netip.Addr
	// Dirs are where the agent writes the node state and CNI config and
	// opens its sockets; empty ones get Weft's standard paths.
	Dirs names.Dirs
	// MTU is the pods' MTU. Zero derives it from the underlay interface:
	// its MTU, less the VXLAN overhead when VXLAN may be used. An explicit
	// MTU is for underlays whose interface MTU is not what the path
	// between nodes carries (a tunnel or cloud network further on); it
	// may not exceed the derived one, or encapsulated packets would not fit.
	MTU int
	// HealthAddr serves /healthz and /readyz; empty serves nothing.
	HealthAddr string
	// ProbePort is published in the node record: the UDP port on which
	// this node answers its peers' probes (0: no probes are answered).
	ProbePort int
	// Resync is how often the datapath is reconciled without any change
	// in the datastore, to repair drift (default 30 s).
	Resync time.Duration
	Store  store.Store
	Logger *slog.Logger
	// ProcSysNet is where the agent's network namespace's net sysctls are
	// (default /proc/sys/net). In a container /proc/sys is read-only, so
	// the DaemonSet mounts the host's /proc/sys/net elsewhere, writable:
	// with hostNetwork it answers for the node's namespace.
	ProcSysNet string
	// Metrics, when set, receives reconcile, lease and datastore events.
	Metrics *metrics.Metrics
	// Policy, when set, enforces NetworkPolicy once the subnet is leased
	// (see policy.go).
	Policy PolicyRunner
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		return errors.New("a node name is required (--node-name)")
	}
	b, err := cluster.ParseBackend(string(c.Backend))
	if err != nil {
		return err
	}
	c.Backend = b
	if !c.ClusterCIDR.IsValid() || !c.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("cluster CIDR %q: an IPv4 prefix is required", c.ClusterCIDR)
	}
	c.ClusterCIDR = c.ClusterCIDR.Masked()
	if c.UnderlayIP.IsValid() && !c.UnderlayIP.Is4() {
		return fmt.Errorf("underlay address %s: an IPv4 address is required", c.UnderlayIP)
	}
	if c.MTU != 0 && c.MTU < cluster.MinMTU {
		return fmt.Errorf("pod MTU %d: must be at least %d (or 0 to derive it from the underlay)", c.MTU, cluster.MinMTU)
	}
	c.Dirs = c.Dirs.WithDefaults()
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
