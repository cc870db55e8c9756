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
	"github.com/weftnet/weft/internal/policyctl"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

func init() {
	register("agent", "run the node agent (or remove what it made: --cleanup)", runAgent)
}

func runAgent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	nodeName := fs.String("node-name", "", "this node's name (default: $NODE_NAME, which the DaemonSet sets to the Node's name, else the host name)")
	dsName := fs.String("datastore", "", "where leases and node records live: "+datastoreNames())
	cidr := fs.String("cluster-cidr", "10.244.0.0/16", "the pod network; every node leases a subnet of it")
	subnetLen := fs.Int("subnet-len", 24, "prefix length of each node's pod subnet")
	ttl := fs.Duration("lease-ttl", etcdstore.DefaultTTL, "etcd: how long the node counts as running without renewing; long, so that no other node claims the subnet of an agent that is down (its record and routes stay after that, until another node claims the subnet)")
	backend := cluster.BackendAuto
	fs.Var(&backend, "backend", "how peers are reached: auto (direct route on the same L2 segment, VXLAN otherwise), host-gw or vxlan")
	mtu := fs.Int("mtu", 0, fmt.Sprintf("the pods' MTU (at least %d); 0 derives it from the underlay interface: its MTU, less %d for VXLAN unless --backend is host-gw", cluster.MinMTU, cluster.VXLANOverhead))
	underlay := fs.String("underlay-ip", "", "this node's address between nodes (default: the IPv4 address of the default route's interface)")
	dataDir := fs.String("data-dir", names.DataDir, "node state and IPAM data")
	runDir := fs.String("run-dir", names.RunDir, "sockets")
	confDir := fs.String("cni-conf-dir", names.CNIConfDir, "where the CNI config is written")
	binDir := fs.String("cni-bin-dir", names.CNIBinDir, "the CNI plugins' directory (weft-portmap, else portmap, is chained when present)")
	netpolOn := fs.Bool("network-policy", true, "enforce Kubernetes NetworkPolicy on this node's pods (with --datastore kubernetes)")
	dropLog := policyctl.DefaultDropLog
	fs.Func("policy-log-rate", fmt.Sprintf("packets a second each NetworkPolicy verdict chain logs of those it drops, naming the pods and policies (0: count drops, log none; default %d)", dropLog.Rate), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		dropLog.Rate = uint32(n)
		return err
	})
	fs.Func("policy-log-group", fmt.Sprintf("the NFLOG group dropped packets are logged through (default %d; change it if other software on the node uses it)", dropLog.Group), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		dropLog.Group = uint16(n)
		return err
	})
	metricsAddr := fs.String("metrics-addr", fmt.Sprintf("127.0.0.1:%d", names.MetricsPort), "address serving Prometheus /metrics (empty: none)")
	healthAddr := fs.String("health-addr", fmt.Sprintf("127.0.0.1:%d", names.HealthPort), "address serving /healthz and /readyz (empty: none)")
	resync := fs.Duration("resync", 30*time.Second, "how often the datapath is checked for drift")
	procSysNet := fs.String("proc-sys-net", "/proc/sys/net", "the node's net sysctls (a writable bind of the host's /proc/sys/net in a container)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cleanup := fs.Bool("cleanup", false, "remove everything Weft made on this node (and, with --datastore, the node's record and lease) and exit")
	openDatastore := datastoreFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *mtu != 0 && *mtu < cluster.MinMTU {
		return fmt.Errorf("--mtu %d: the pod MTU must be at least %d (or 0 to derive it from the underlay)", *mtu, cluster.MinMTU)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	cfg := agent.Config{
		NodeName: resolveNodeName(*nodeName), Backend: backend, MTU: *mtu,
		Dirs:       names.Dirs{Data: *dataDir, Run: *runDir, CNIConf: *confDir, CNIBin: *binDir},
		HealthAddr: *healthAddr, Resync: *resync, Logger: log, ProcSysNet: *procSysNet,
		// agentserve below answers probes on this port; the record says so.
		ProbePort: names.ProbePort,
	}
	var err error
	if cfg.ClusterCIDR, err = netip.ParsePrefix(*cidr); err != nil {
		return fmt.Errorf("--cluster-cidr: %w", err)
	}
	if *underlay != "" {
		if cfg.UnderlayIP, err = netip.ParseAddr(*underlay); err != nil {
			return fmt.Errorf("--underlay-ip: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *dsName == "" && !*cleanup {
		return fmt.Errorf("--datastore is required (%s)", datastoreNames())
	}
	var endpoint string
	if *dsName != "" {
		sc := storeConfig{NodeName: cfg.NodeName, ClusterCIDR: cfg.ClusterCIDR, SubnetLen: *subnetLen, LeaseTTL: *ttl, Logger: log}
		if cfg.Store, endpoint, err = openDatastore(*dsName, sc); err != nil {
			return fmt.Errorf("datastore %s: %w", *dsName, err)
		}
		defer cfg.Store.Close()
		// No peer's record may route the datastore away from this node.
		cfg.Protected = agent.EndpointPrefixes(ctx, endpoint)
	}

	if *cleanup {
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

	m := metrics.New()
	cfg.Metrics = m
	var explainPolicy func(ns, name string) (netpol.Explanation, error)
	var policyCNI func(cnievents.Event)
	if *netpolOn {
		cfg.Policy, explainPolicy, policyCNI = policyRunner(cfg.NodeName, cfg.ProcSysNet, dropLog, m, log)
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
			DatastoreKind: *dsName, DatastoreEndpoint: endpoint, MetricsAddr: *metricsAddr, Metrics: m, Logger: log,
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
