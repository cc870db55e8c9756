package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/store"
)

// Agent is one node's agent.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status Status

	// stateMu orders the writers of node.json (setup and every resync,
	// and each lease renewal), so that a renewal's expiry is never
	// overwritten by an older one.
	stateMu sync.Mutex

	heartbeat    atomic.Int64 // unix nanos of the main loop's last turn
	stateWritten atomic.Bool
	reconciled   atomic.Bool
	leaseHeld    atomic.Bool
}

// New checks cfg and returns an agent that has not started.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, errors.New("agent: no datastore")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName)}
	a.status = Status{Node: cfg.NodeName, Backend: cfg.Backend, StartTime: time.Now()}
	a.beat()
	return a, nil
}

func (a *Agent) beat() { a.heartbeat.Store(time.Now().UnixNano()) }

// Run runs the agent until ctx ends (a clean stop: nil, the datapath stays)
// or a fatal error: the cluster CIDR is exhausted, the datastore
// credentials are another node's, the node's subnet was taken by another
// node, the node cannot be set up.
func (a *Agent) Run(ctx context.Context) error {
	stopHealth, err := a.serveHealth()
	if err != nil {
		return err
	}
	defer stopHealth()
	// A wrong underlay address fails now, before the datastore is asked
	// for a lease.
	ip, err := a.checkUnderlay()
	if err != nil {
		return err
	}
	lease, err := a.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	dp, rec, err := a.setup(lease, ip)
	if err != nil {
		return err
	}
	defer dp.Close()

	// Deferred in this order so that cancel runs first and the goroutines
	// can end before Wait.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, 1)
	a.startPolicy(ctx, &wg, lease.Subnet)
	a.startLease(ctx, &wg, lease, rec, fatal)
	snaps := a.watchPeers(ctx, &wg, fatal)
	return a.loop(ctx, dp, lease, snaps, fatal)
}

// checkUnderlay finds the node's underlay address and checks that the
// pods' MTU fits the interface that holds it.
func (a *Agent) checkUnderlay() (netip.Addr, error) {
	ip, err := underlayIP(a.cfg.UnderlayIP)
	if err != nil {
		return ip, err
	}
	return ip, checkMTU(a.cfg, ip)
}

// startLease publishes the node's record and keeps its lease, in the
// background (keepLease). It publishes once before it returns, so that
// the node is in the datastore by the time it reports ready; keepLease
// retries if this fails. Losing the lease is fatal.
func (a *Agent) startLease(ctx context.Context, wg *sync.WaitGroup, lease store.Lease, rec cluster.Node, fatal chan<- error) {
	published := a.publish(ctx, rec)
	wg.Go(func() {
		if err := a.keepLease(ctx, lease, rec, published); err != nil {
			sendFatal(fatal, err)
		}
	})
}

// watchPeers watches the peers' records in the background. It hands over
// the latest snapshot only: a reconcile always works from the newest
// full set, however many changes came meanwhile. A watch that ends
// before ctx does is fatal.
func (a *Agent) watchPeers(ctx context.Context, wg *sync.WaitGroup, fatal chan<- error) <-chan []cluster.Node {
	snaps := make(chan []cluster.Node, 1)
	wg.Go(func() {
		err := a.cfg.Store.Watch(ctx, func(nodes []cluster.Node) {
			select {
			case <-snaps:
			default:
			}
			snaps <- nodes
		})
		if err != nil && ctx.Err() == nil {
			sendFatal(fatal, fmt.Errorf("watch the peers' records: %w", err))
		}
	})
	return snaps
}

// sendFatal hands err to the main loop unless another fatal error is
// already waiting there.
func sendFatal(fatal chan<- error, err error) {
	select {
	case fatal <- err:
	default:
	}
}

// loop is the agent's main loop: it reconciles the datapath with every
// new snapshot of the peers, repairs drift at each resync and when the
// kernel changes Weft's links or routes (retrying a failed repair or
// reconcile soon), and reads the firewall's drop counters, until ctx
// ends or a fatal error comes.
func (a *Agent) loop(ctx context.Context, dp *datapath.Datapath, lease store.Lease, snaps <-chan []cluster.Node, fatal <-chan error) error {
	a.log.Info("agent running; waiting for the peers' records", "subnet", lease.Subnet, "backend", a.cfg.Backend)
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	beat := time.NewTicker(2 * time.Second)
	defer beat.Stop()
	kernel, err := watchKernel(ctx, 100*time.Millisecond)
	if err != nil {
		a.log.Warn("cannot watch the kernel's links and routes; drift is repaired at each resync only", "err", err, "resync", a.cfg.Resync)
	}
	var retry <-chan time.Time
	var peers []cluster.Node
	havePeers := false
	for {
		reconcile, repair := false, false
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; the datapath stays in place")
			return nil
		case err := <-fatal:
			return err
		case peers = <-snaps:
			havePeers, reconcile = true, true
			a.noteConflicts()
		case <-resync.C:
			// Repair drift, including what setup made (a deleted bridge,
			// flushed nftables table, rewritten conflist).
			repair = true
		case <-retry:
			retry, repair = nil, true
		case <-kernel:
			// An interface went down or up, or a route of Weft's went:
			// put back what the kernel took, now.
			a.log.Debug("kernel changed links or Weft's routes; repairing")
			repair = true
		case <-beat.C:
			a.readDrops()
		}
		if repair {
			reconcile = havePeers
			if !a.repair(dp, lease) {
				retry = time.After(2 * time.Second)
			}
		}
		a.beat()
		// Never before the first snapshot: reconciling against an empty
		// list (datastore down at start) would remove every route.
		if reconcile {
			if err := a.reconcile(dp, peers); err != nil {
				retry = time.After(2 * time.Second)
			}
		}
	}
}

// acquire gets the node's lease, retrying while the datastore is down.
// An exhausted cluster CIDR is fatal: retrying cannot fix it.
func (a *Agent) acquire(ctx context.Context) (store.Lease, error) {
	backoff := 500 * time.Millisecond
	// The subnet this node's pods already use, when the agent ran here
	// before: if the lease lapsed while the agent was down (a crash loop,
	// a reboot), asking for the same subnet keeps the running pods'
	// addresses routable.
	var prefer netip.Prefix
	if st, err := nodestate.Read(a.cfg.Dirs.Data); err == nil {
		prefer = st.Subnet
	}
	for {
		a.beat()
		l, err := a.cfg.Store.AcquireLease(ctx, a.cfg.NodeName, prefer)
		if err == nil {
			if !a.cfg.ClusterCIDR.Contains(l.Subnet.Addr()) {
				return l, fmt.Errorf("the datastore gave node %s the subnet %s, outside the cluster CIDR %s", a.cfg.NodeName, l.Subnet, a.cfg.ClusterCIDR)
			}
			if prefer.IsValid() && l.Subnet != prefer {
				// setup rewrites node.json, so new pods get the new subnet;
				// pods made before keep addresses that no peer routes here.
				a.log.Warn("this node's pod subnet changed: pods made before keep addresses of the old subnet and must be restarted",
					"old", prefer, "new", l.Subnet)
			}
			a.leaseHeld.Store(true)
			a.update(func(s *Status) { s.Lease = &l })
			a.log.Info("subnet lease acquired", "subnet", l.Subnet, "expires", l.Expires)
			return l, nil
		}
		if errors.Is(err, store.ErrCIDRExhausted) || errors.Is(err, store.ErrCredentials) {
			return l, fmt.Errorf("cannot lease a pod subnet: %w", err)
		}
		a.log.Warn("cannot acquire a subnet lease yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return l, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// leaseCheck is how often a lease that never expires (a Kubernetes
// podCIDR) is checked all the same: the node's Node may have been deleted
// (the subnet is then lost) or its record wiped (it is then republished).
const leaseCheck = time.Minute

// nextRenewal is when lease l is renewed next: at a third of its TTL, or
// after leaseCheck when it does not expire.
func nextRenewal(l store.Lease) time.Time {
	if l.Expires.IsZero() {
		return time.Now().Add(leaseCheck)
	}
	return time.Now().Add(time.Until(l.Expires) / 3)
}

// keepLease publishes the node's record until that works and renews the
// lease (see nextRenewal). Only a lease lost to another node is an
// error: while the datastore is down it retries every few seconds and
// leaves the datapath as it is.
func (a *Agent) keepLease(ctx context.Context, l store.Lease, rec cluster.Node, published bool) error {
	const retry = 2 * time.Second
	renewAt := nextRenewal(l)
	for {
		if !published {
			published = a.publish(ctx, rec)
		}
		wait := retry
		if published || time.Until(renewAt) < wait {
			wait = time.Until(renewAt)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if time.Now().Before(renewAt) {
			continue
		}
		nl, err := a.cfg.Store.RenewLease(ctx, l)
		if ctx.Err() != nil {
			return nil // stopping: not a datastore failure
		}
		if m := a.cfg.Metrics; m != nil {
			m.LeaseRenewed(err)
			if err != nil {
				m.DatastoreError("renew")
			}
		}
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			// (etcd: the lease lapsed and another node claimed the subnet;
			// Kubernetes: the Node was deleted or got another podCIDR.)
			return fmt.Errorf("node %s lost its subnet %s; restart the agent to lease a new one: %w", a.cfg.NodeName, l.Subnet, err)
		case err != nil:
			a.log.Warn("cannot renew the subnet lease; the datapath stays as it is; retrying", "err", err, "expires", l.Expires)
			renewAt = time.Now().Add(retry)
		default:
			l = nl
			a.update(func(s *Status) { s.Lease = &nl })
			if err := a.stampLease(nl); err != nil {
				a.log.Warn("cannot write the renewed lease into the node state", "err", err)
			}
			renewAt = nextRenewal(l)
			if published {
				// A no-op when the record is there; brings it back if the
				// datastore lost it. A failure is retried every few
				// seconds above rather than at the next renewal.
				if err := a.cfg.Store.Publish(ctx, rec); err != nil {
					a.log.Warn("cannot republish the node record; retrying", "err", err)
					published = false
				}
			}
		}
	}
}

// repair re-ensures the node's setup and reports whether it is right.
func (a *Agent) repair(dp *datapath.Datapath, l store.Lease) bool {
	err := a.ensureNode(dp, l)
	a.update(func(s *Status) {
		s.LastSetupError = ""
		if err != nil {
			s.LastSetupError = err.Error()
		}
	})
	if err != nil {
		a.log.Error("repairing the node setup failed; retrying", "err", err)
		return false
	}
	return true
}

func (a *Agent) publish(ctx context.Context, rec cluster.Node) bool {
	if err := a.cfg.Store.Publish(ctx, rec); err != nil {
		a.log.Warn("cannot publish the node record yet; retrying", "err", err)
		return false
	}
	a.log.Info("node record published", "underlay_ip", rec.UnderlayIP, "subnet", rec.Subnet, "vtep_mac", rec.VTEPMAC)
	return true
}

func (a *Agent) reconcile(dp *datapath.Datapath, peers []cluster.Node) error {
	start := time.Now()
	res, err := dp.Reconcile(peers)
	// The VXLAN guard lets in exactly the peers the datapath planned for
	// (also when some of their paths failed); without a plan (the
	// datapath failed before it) the guard stays as it is.
	if err == nil || res.Peers != nil {
		g, gerr := a.syncVXLANGuard(res.Peers)
		res.Added, res.Removed, err = res.Added+g.Added, res.Removed+g.Removed, errors.Join(err, gerr)
	}
	took := time.Since(start)
	if m := a.cfg.Metrics; m != nil {
		m.ObserveReconcile(took, err)
		m.DatapathChanged("all", "add", res.Added)
		m.DatapathChanged("all", "delete", res.Removed)
	}
	a.mu.Lock()
	old := map[string]datapath.PeerPath{}
	for _, p := range a.status.Peers {
		old[p.Name] = p
	}
	s := &a.status
	s.Reconciles++
	s.LastReconcile, s.LastReconcileDuration = start, took
	s.LastReconcileError = ""
	if err != nil {
		s.LastReconcileError = err.Error()
	}
	s.Routes, s.Neighbours, s.FDB, s.Peers = res.Routes, res.Neighbours, res.FDB, res.Peers
	a.mu.Unlock()

	refused := map[string]int{}
	for _, p := range res.Peers {
		o, ok := old[p.Name]
		changed := !ok || o.Path != p.Path || o.Subnet != p.Subnet || o.UnderlayIP != p.UnderlayIP || o.Reason != p.Reason
		switch {
		case p.Refused != "":
			refused[p.Refused]++
			if changed {
				// A record the datapath does not trust: someone may be
				// trying to take over a route, or a node is misconfigured.
				a.log.Warn("peer record refused", "peer", p.Name, "subnet", p.Subnet, "underlay_ip", p.UnderlayIP,
					"refused", p.Refused, "reason", p.Reason)
			}
		case changed:
			a.log.Info("peer path", "peer", p.Name, "subnet", p.Subnet, "underlay_ip", p.UnderlayIP, "path", p.Path, "reason", p.Reason)
		}
		delete(old, p.Name)
	}
	if m := a.cfg.Metrics; m != nil {
		m.SetRefusedRecords(datapath.RefusalReasons, refused)
	}
	for name := range old {
		a.log.Info("peer left", "peer", name)
	}
	lvl := slog.LevelDebug
	if res.Added+res.Removed > 0 {
		lvl = slog.LevelInfo
	}
	a.log.Log(context.Background(), lvl, "datapath reconciled", "peers", len(res.Peers), "routes", res.Routes,
		"neighbours", res.Neighbours, "fdb", res.FDB, "added", res.Added, "removed", res.Removed, "took", took)
	if err != nil {
		a.log.Error("datapath reconcile incomplete; retrying", "err", err)
		return err
	}
	if !a.reconciled.Swap(true) {
		a.log.Info("first reconcile done; node ready", "peers", len(res.Peers))
		a.update(func(s *Status) { s.Ready = true })
	}
	return nil
}
