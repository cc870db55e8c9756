package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/agentserve"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/policyctl"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

func init() {
	register("agent", "run the node agent (or remove what it made: --cleanup)", runAgent)
}

// agentFlags are `weft agent`'s flags, as parsed.
type agentFlags struct {
	nodeName, datastore, clusterCIDR, underlay string
	subnetLen                                  int
	leaseTTL                                   time.Duration
	backend                                    cluster.Backend
	mtu                                        int
	dirs                                       names.Dirs
	networkPolicy                              bool
	dropLog                                    netpolnft.DropLog
	metricsAddr, healthAddr                    string
	resync                                     time.Duration
	procSysNet, logLevel                       string
	cleanup                                    bool
	// openDatastore opens the datastore named by --datastore, with the
	// flags the datastores added.
	openDatastore func(name string, c storeConfig) (store.Store, string, error)
}

// runAgent runs the node agent until SIGTERM or SIGINT, or with --cleanup
// removes what it made and exits.
func runAgent(args []string) error {
	f, err := parseAgentFlags(args)
	if err != nil {
		return err
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := f.agentConfig(log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	endpoint, err := f.connectDatastore(ctx, &cfg, log)
	if err != nil {
		return err
	}
	if cfg.Store != nil {
		defer cfg.Store.Close()
	}
	if f.cleanup {
		return cleanupNode(ctx, cfg, log)
	}
	return runNodeAgent(ctx, cfg, f, endpoint, log)
}

// parseAgentFlags parses and checks the agent's command line.
func parseAgentFlags(args []string) (*agentFlags, error) {
	f := &agentFlags{backend: cluster.BackendAuto, dropLog: policyctl.DefaultDropLog}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name (default: $NODE_NAME, which the DaemonSet sets to the Node's name, else the host name)")
	fs.StringVar(&f.datastore, "datastore", "", "where leases and node records live: "+datastoreNames())
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "10.244.0.0/16", "the pod network; every node leases a subnet of it")
	fs.IntVar(&f.subnetLen, "subnet-len", 24, "prefix length of each node's pod subnet")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", etcdstore.DefaultTTL, "etcd: how long the node counts as running without renewing; long, so that no other node claims the subnet of an agent that is down (its record and routes stay after that, until another node claims the subnet)")
	fs.Var(&f.backend, "backend", "how peers are reached: auto (direct route on the same L2 segment, VXLAN otherwise), host-gw or vxlan")
	fs.IntVar(&f.mtu, "mtu", 0, fmt.Sprintf("the pods' MTU (at least %d); 0 derives it from the underlay interface: its MTU, less %d for VXLAN unless --backend is host-gw", cluster.MinMTU, cluster.VXLANOverhead))
	fs.StringVar(&f.underlay, "underlay-ip", "", "this node's address between nodes (default: the IPv4 address of the default route's interface)")
	fs.StringVar(&f.dirs.Data, "data-dir", names.DataDir, "node state and IPAM data")
	fs.StringVar(&f.dirs.Run, "run-dir", names.RunDir, "sockets")
	fs.StringVar(&f.dirs.CNIConf, "cni-conf-dir", names.CNIConfDir, "where the CNI config is written")
	fs.StringVar(&f.dirs.CNIBin, "cni-bin-dir", names.CNIBinDir, "the CNI plugins' directory (weft-portmap, else portmap, is chained when present)")
	fs.BoolVar(&f.networkPolicy, "network-policy", true, "enforce Kubernetes NetworkPolicy on this node's pods (with --datastore kubernetes)")
	fs.Func("policy-log-rate", fmt.Sprintf("packets a second each NetworkPolicy verdict chain logs of those it drops, naming the pods and policies (0: count drops, log none; default %d)", f.dropLog.Rate), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		f.dropLog.Rate = uint32(n)
		return err
	})
	fs.Func("policy-log-group", fmt.Sprintf("the NFLOG group dropped packets are logged through (default %d; change it if other software on the node uses it)", f.dropLog.Group), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		f.dropLog.Group = uint16(n)
		return err
	})
	fs.StringVar(&f.metricsAddr, "metrics-addr", fmt.Sprintf("127.0.0.1:%d", names.MetricsPort), "address serving Prometheus /metrics (empty: none)")
	fs.StringVar(&f.healthAddr, "health-addr", fmt.Sprintf("127.0.0.1:%d", names.HealthPort), "address serving /healthz and /readyz (empty: none)")
	fs.DurationVar(&f.resync, "resync", 30*time.Second, "how often the datapath is checked for drift")
	fs.StringVar(&f.procSysNet, "proc-sys-net", "/proc/sys/net", "the node's net sysctls (a writable bind of the host's /proc/sys/net in a container)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.cleanup, "cleanup", false, "remove everything Weft made on this node (and, with --datastore, the node's record and lease) and exit")
	f.openDatastore = datastoreFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.mtu != 0 && f.mtu < cluster.MinMTU {
		return nil, fmt.Errorf("--mtu %d: the pod MTU must be at least %d (or 0 to derive it from the underlay)", f.mtu, cluster.MinMTU)
	}
	return f, nil
}

// newLogger makes the agent's logger (also the process's default) at the
// named level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	slog.SetDefault(log)
	return log, nil
}

// agentConfig is the agent's configuration from the flags, without the
// datastore and the servers beside it.
func (f *agentFlags) agentConfig(log *slog.Logger) (agent.Config, error) {
	cfg := agent.Config{
		NodeName: resolveNodeName(f.nodeName), Backend: f.backend, MTU: f.mtu,
		Dirs:       f.dirs,
		HealthAddr: f.healthAddr, Resync: f.resync, Logger: log, ProcSysNet: f.procSysNet,
		// agentserve answers probes on this port; the record says so.
		ProbePort: names.ProbePort,
	}
	var err error
	if cfg.ClusterCIDR, err = netip.ParsePrefix(f.clusterCIDR); err != nil {
		return cfg, fmt.Errorf("--cluster-cidr: %w", err)
	}
	if f.underlay != "" {
		if cfg.UnderlayIP, err = netip.ParseAddr(f.underlay); err != nil {
			return cfg, fmt.Errorf("--underlay-ip: %w", err)
		}
	}
	return cfg, nil
}

// connectDatastore opens the datastore into cfg (required, but for
// --cleanup, which then removes only what is on the node) and returns
// where it is. Opening does not contact it.
func (f *agentFlags) connectDatastore(ctx context.Context, cfg *agent.Config, log *slog.Logger) (endpoint string, err error) {
	if f.datastore == "" {
		if f.cleanup {
			return "", nil
		}
		return "", fmt.Errorf("--datastore is required (%s)", datastoreNames())
	}
	sc := storeConfig{NodeName: cfg.NodeName, ClusterCIDR: cfg.ClusterCIDR, SubnetLen: f.subnetLen, LeaseTTL: f.leaseTTL, Logger: log}
	if cfg.Store, endpoint, err = f.openDatastore(f.datastore, sc); err != nil {
		return "", fmt.Errorf("datastore %s: %w", f.datastore, err)
	}
	// No peer's record may route the datastore away from this node.
	cfg.Protected = agent.EndpointPrefixes(ctx, endpoint)
	return endpoint, nil
}

// cleanupNode is `weft agent --cleanup`: it removes what the agent made
// on this node, and the node's record and lease when cfg has a datastore.
func cleanupNode(ctx context.Context, cfg agent.Config, log *slog.Logger) error {
	log.Info("removing everything Weft made on this node", "node", cfg.NodeName)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	removed, err := agent.Cleanup(cctx, cfg)
	for _, r := range removed {
		log.Info("removed", "what", r)
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log.Info("cleanup done", "node", cfg.NodeName)
	return nil
}

// runNodeAgent runs the agent, with NetworkPolicy unless it is off, and the
// servers beside it (local API, probes, metrics, CNI events) until ctx
// ends or the agent fails.
func runNodeAgent(ctx context.Context, cfg agent.Config, f *agentFlags, endpoint string, log *slog.Logger) error {
	m := metrics.New()
	cfg.Metrics = m
	var explainPolicy func(ns, name string) (netpol.Explanation, error)
	var policyCNI func(cnievents.Event)
	if f.networkPolicy {
		cfg.Policy, explainPolicy, policyCNI = policyRunner(cfg.NodeName, cfg.ProcSysNet, f.dropLog, m, log)
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	opsCtx, stopOps := context.WithCancel(ctx)
	opsErr := make(chan error, 1)
	go func() {
		opsErr <- agentserve.Run(opsCtx, a, agentserve.Config{
			ClusterCIDR: cfg.ClusterCIDR, Dirs: cfg.Dirs,
			DatastoreKind: f.datastore, DatastoreEndpoint: endpoint, MetricsAddr: f.metricsAddr, Metrics: m, Logger: log,
			Policy: explainPolicy, CNIEvent: policyCNI,
		})
	}()
	err = a.Run(ctx)
	stopOps()
	if oerr := <-opsErr; oerr != nil {
		log.Error("operator API stopped", "err", oerr)
	}
	if err != nil {
		log.Error("agent failed", "err", err)
		return err
	}
	return nil
}

// resolveNodeName is this node's name, decided once for the agent and its
// datastore: --node-name when given, else NODE_NAME (what the DaemonSet
// sets from spec.nodeName), else the host name, which is kubelet's default
// Node name.
func resolveNodeName(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("NODE_NAME"); env != "" {
		return env
	}
	host, _ := os.Hostname()
	return host
}
