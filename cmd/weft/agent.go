package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/agentops"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/names"
)

// agentOpts holds the agent's flags that datastores may need when opened.
var agentOpts struct {
	nodeName    string
	clusterCIDR netip.Prefix
	subnetLen   int
	leaseTTL    time.Duration
	logger      *slog.Logger
}

func init() {
	register("agent", "run the node agent (or remove what it made: --cleanup)", runAgent)
}

func runAgent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	host, _ := os.Hostname()
	nodeName := fs.String("node-name", host, "this node's name")
	dsName := fs.String("datastore", "", "where leases and node records live: "+datastoreNames())
	cidr := fs.String("cluster-cidr", "10.244.0.0/16", "the pod network; every node leases a subnet of it")
	subnetLen := fs.Int("subnet-len", 24, "prefix length of each node's pod subnet")
	ttl := fs.Duration("lease-ttl", 60*time.Second, "how long a subnet lease lives without renewal")
	backend := cluster.BackendAuto
	fs.Var(&backend, "backend", "how peers are reached: auto (direct route on the same L2 segment, VXLAN otherwise), host-gw or vxlan")
	mtu := fs.Int("mtu", 0, fmt.Sprintf("the pods' MTU (at least %d); 0 derives it from the underlay interface: its MTU, less %d for VXLAN unless --backend is host-gw", cluster.MinMTU, cluster.VXLANOverhead))
	underlay := fs.String("underlay-ip", "", "this node's address between nodes (default: the IPv4 address of the default route's interface)")
	dataDir := fs.String("data-dir", names.DataDir, "node state and IPAM data")
	runDir := fs.String("run-dir", names.RunDir, "sockets")
	confDir := fs.String("cni-conf-dir", names.CNIConfDir, "where the CNI config is written")
	binDir := fs.String("cni-bin-dir", names.CNIBinDir, "the CNI plugins' directory (portmap is chained when present)")
	metricsAddr := fs.String("metrics-addr", fmt.Sprintf("127.0.0.1:%d", names.MetricsPort), "address serving Prometheus /metrics (empty: none)")
	healthAddr := fs.String("health-addr", fmt.Sprintf("127.0.0.1:%d", names.HealthPort), "address serving /healthz and /readyz (empty: none)")
	resync := fs.Duration("resync", 30*time.Second, "how often the datapath is checked for drift")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cleanup := fs.Bool("cleanup", false, "remove everything Weft made on this node (and, with --datastore, the node's record and lease) and exit")
	for _, ds := range datastores {
		ds.addFlags(fs)
	}
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
		NodeName: *nodeName, Backend: backend, MTU: *mtu,
		DataDir: *dataDir, RunDir: *runDir, CNIConfDir: *confDir, CNIBinDir: *binDir,
		HealthAddr: *healthAddr, Resync: *resync, Logger: log,
		// agentops below answers probes on this port; the record says so.
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
	agentOpts.nodeName, agentOpts.clusterCIDR, agentOpts.subnetLen, agentOpts.leaseTTL, agentOpts.logger =
		*nodeName, cfg.ClusterCIDR, *subnetLen, *ttl, log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *dsName == "" && !*cleanup {
		return fmt.Errorf("--datastore is required (%s)", datastoreNames())
	}
	var endpoint string
	if *dsName != "" {
		if cfg.Store, endpoint, err = openDatastore(ctx, *dsName); err != nil {
			return fmt.Errorf("datastore %s: %w", *dsName, err)
		}
		defer cfg.Store.Close()
	}

	if *cleanup {
		log.Info("removing everything Weft made on this node", "node", cfg.NodeName)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := agent.Cleanup(cctx, cfg); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		log.Info("cleanup done", "node", cfg.NodeName)
		return nil
	}

	m := metrics.New()
	cfg.Metrics = m
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	opsCtx, stopOps := context.WithCancel(ctx)
	opsErr := make(chan error, 1)
	go func() {
		opsErr <- agentops.Run(opsCtx, a, agentops.Config{
			ClusterCIDR: cfg.ClusterCIDR, RunDir: *runDir, DataDir: *dataDir,
			CNIConfDir: *confDir, CNIBinDir: *binDir,
			DatastoreKind: *dsName, DatastoreEndpoint: endpoint, MetricsAddr: *metricsAddr, Metrics: m, Logger: log,
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
