// Package agentserve runs the servers that sit beside a node's agent and
// serve others, not the kernel: the local API that `weft status`, `weft
// peers` and `weft doctor` read, the probe responder and prober between
// agents over the pod network, the Prometheus metrics endpoint, and the
// socket that receives the CNI plugin's events. It reads the agent only
// through its public Status and Ready, and changes nothing on the node but
// its own sockets: the agent programs the node, agentserve reports on it.
package agentserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cniconf"
	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/probe"
)

// Agent is what agentserve reads; *agent.Agent implements it.
type Agent interface {
	Status() agent.Status
	Ready() error
}

// Config of the servers beside one agent.
type Config struct {
	ClusterCIDR netip.Prefix
	// Dirs are the agent's: Run holds the API and CNI events sockets,
	// Data the IPAM leases (for addresses used and free); all are reported
	// to tools on the node. Empty ones get Weft's standard paths.
	Dirs names.Dirs
	// DatastoreKind ("etcd", "kubernetes") and DatastoreEndpoint are shown
	// by `weft status`.
	DatastoreKind, DatastoreEndpoint string
	// MetricsAddr serves /metrics; empty serves none (the agent may mount
	// Metrics().Handler() on its own server instead).
	MetricsAddr string
	// Metrics is the registry to fill; nil makes a new one.
	Metrics *metrics.Metrics
	// ProbePort, ProbeInterval, ProbeTimeout and DownAfter configure the
	// probes between agents; zero takes names.ProbePort and the probe
	// package's defaults.
	ProbePort                              uint16
	ProbeInterval, ProbeTimeout, DownAfter time.Duration
	// Poll is how often the agent's status is read (default 1s).
	Poll   time.Duration
	Logger *slog.Logger
	// Policy explains NetworkPolicy for a pod (`weft policy`); nil when
	// the agent enforces none.
	Policy func(namespace, name string) (netpol.Explanation, error)
	// CNIEvent, when set, is handed each event from the CNI plugin after
	// the metrics have it (the NetworkPolicy controller learns new pods'
	// addresses from ADD). It must not block: the socket's one reader
	// calls it.
	CNIEvent func(cnievents.Event)
}

// Server is one agent's running servers.
type Server struct {
	cfg   Config
	agent Agent
	m     *metrics.Metrics
	log   *slog.Logger

	mu       sync.Mutex
	gw       netip.Addr // where the responder and prober are bound
	prober   *probe.Prober
	stopProb context.CancelFunc
	probeErr error
}

// Metrics is the registry agentserve fills, for the agent's own updates.
func (o *Server) Metrics() *metrics.Metrics { return o.m }

// Run serves until ctx ends. Every socket is opened on the calling
// goroutine (never on one it starts), so a caller running in a network
// namespace gets them there.
func Run(ctx context.Context, a Agent, cfg Config) error {
	o, err := start(ctx, a, cfg)
	if err != nil {
		return err
	}
	return o.loop(ctx)
}

func start(ctx context.Context, a Agent, cfg Config) (*Server, error) {
	cfg.Dirs = cfg.Dirs.WithDefaults()
	if cfg.ProbePort == 0 {
		cfg.ProbePort = names.ProbePort
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	return &Server{cfg: cfg, agent: a, m: cfg.Metrics, log: cfg.Logger}, nil
}

func (o *Server) loop(ctx context.Context) error {
	// Deferred calls run last-first: cancel stops every goroutine below,
	// then Wait waits for them.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)

	if o.cfg.MetricsAddr != "" {
		// Listening now makes a taken port a startup error.
		ln, err := net.Listen("tcp", o.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("serve metrics on %s: %w", o.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", o.m.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
		context.AfterFunc(ctx, func() { srv.Close() })
	}

	events, err := cnievents.Listen(filepath.Join(o.cfg.Dirs.Run, cniconf.EventsSocket))
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); o.m.ConsumeCNIEvents(ctx, events.Events(), o.cfg.CNIEvent) }()
	defer events.Close()

	api, err := agentapi.Listen(o.cfg.Dirs.Run)
	if err != nil {
		return err
	}
	apiSrv := &http.Server{Handler: agentapi.Handler(provider{o}), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := apiSrv.Serve(api); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("agent API: %w", err)
		}
	}()
	defer removeSocket(o.cfg.Dirs.Run)
	context.AfterFunc(ctx, func() { apiSrv.Close() })

	defer o.stopProbes()
	for {
		o.refresh(ctx)
		// Until the responder runs, look again soon: peers take a node
		// whose responder is missing for one whose agent is down.
		wait := o.cfg.Poll
		o.mu.Lock()
		if o.prober == nil && wait > 100*time.Millisecond {
			wait = 100 * time.Millisecond
		}
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-time.After(wait):
		}
	}
}

// refresh reads the agent and brings the probes and metrics up to date.
func (o *Server) refresh(ctx context.Context) {
	st := o.agent.Status()
	if st.Lease != nil && st.Lease.Subnet.IsValid() {
		o.ensureProbes(ctx, ipam.Gateway(st.Lease.Subnet))
	}
	o.mu.Lock()
	p := o.prober
	o.mu.Unlock()
	if p != nil {
		want := map[string]netip.AddrPort{}
		for _, peer := range st.Peers {
			if peer.Refused != "" {
				continue // its subnet is not its own to answer for: never probe it
			}
			want[peer.Name] = netip.AddrPortFrom(ipam.Gateway(peer.Subnet), o.cfg.ProbePort)
		}
		p.SetPeers(want)
		byState := map[string]int{}
		rtt := map[string]time.Duration{}
		for _, r := range p.Results() {
			byState[string(r.State)]++
			if r.State == probe.Reachable {
				rtt[r.Name] = r.RTT
			}
		}
		o.m.SetPeers(byState, p.Down())
		o.m.SetPeerRTTs(rtt)
	} else {
		o.m.SetPeers(map[string]int{"unknown": len(st.Peers)}, 0)
	}
	o.m.SetDatapathEntries("route", st.Routes)
	o.m.SetDatapathEntries("neighbour", st.Neighbours)
	o.m.SetDatapathEntries("fdb", st.FDB)
	o.m.SetDatastoreUp(st.DatastoreError == "")
	if st.Lease != nil {
		if used, free, err := o.addresses(st.Lease.Subnet); err == nil {
			o.m.SetIPAM(used, free)
		}
	}
}

// ensureProbes (re)starts the responder and prober at the bridge's
// gateway; a new subnet moves them.
func (o *Server) ensureProbes(ctx context.Context, gw netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gw == gw && o.prober != nil {
		return
	}
	o.stopProbesLocked()
	resp, err := probe.Listen(netip.AddrPortFrom(gw, o.cfg.ProbePort))
	if err != nil {
		o.setProbeErr(err)
		return
	}
	pr, err := probe.NewProber(probe.Config{Source: gw,
		Interval: o.cfg.ProbeInterval, Timeout: o.cfg.ProbeTimeout, DownAfter: o.cfg.DownAfter})
	if err != nil {
		resp.Run(canceled()) // closes its socket
		o.setProbeErr(err)
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	go func() {
		if err := resp.Run(pctx); err != nil {
			o.mu.Lock()
			o.setProbeErr(err)
			o.mu.Unlock()
		}
	}()
	go func() {
		if err := pr.Run(pctx); err != nil {
			o.mu.Lock()
			o.setProbeErr(err)
			o.mu.Unlock()
		}
	}()
	o.gw, o.prober, o.stopProb, o.probeErr = gw, pr, cancel, nil
	o.log.Info("probing peers over the pod network", "from", gw, "port", o.cfg.ProbePort)
}

func (o *Server) setProbeErr(err error) {
	if o.probeErr == nil || o.probeErr.Error() != err.Error() {
		o.log.Error("peer probes not running", "err", err)
	}
	o.probeErr = err
}

func (o *Server) stopProbes() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopProbesLocked()
}

func (o *Server) stopProbesLocked() {
	if o.stopProb != nil {
		o.stopProb()
	}
	o.prober, o.stopProb, o.gw = nil, nil, netip.Addr{}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// addresses counts the subnet's pod addresses in use and free, from the
// plugin's IPAM store.
func (o *Server) addresses(subnet netip.Prefix) (used, free int, err error) {
	s, err := ipam.Open(ipam.Dir(o.cfg.Dirs.Data, names.NetworkName), subnet)
	if err != nil {
		return 0, 0, err
	}
	leases, err := s.Leases()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range leases {
		if subnet.Contains(l.Addr) {
			used++
		}
	}
	return used, max(ipam.Capacity(subnet)-used, 0), nil
}

func removeSocket(runDir string) {
	os.Remove(agentapi.SocketPath(runDir))
}
