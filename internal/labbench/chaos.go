package labbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// Chaos phases, in the order a run takes them.
const (
	PhaseChurn     = "churn"
	PhaseCrash     = "datastore-kill"
	PhaseDatastore = "datastore-stop"
	PhaseAgent     = "agent"
	PhaseReboot    = "reboot"
	PhaseFlap      = "flap"
)

// ChaosPhases lists every phase.
var ChaosPhases = []string{PhaseChurn, PhaseCrash, PhaseDatastore, PhaseAgent, PhaseReboot, PhaseFlap}

// ChaosConfig sizes a chaos run.
type ChaosConfig struct {
	// Name names the lab (empty: chaos and four random digits).
	Name               string
	Nodes, PodsPerNode int
	Backend            cluster.Backend
	// Churn is how many pod ADDs and DELs phase churn makes, spread over
	// the nodes; Kills how many agents it kills with SIGKILL meanwhile.
	Churn, Kills int
	// LeaseTTL is the lab's lease TTL: the datastore and an agent are
	// each down for twice as long.
	LeaseTTL time.Duration
	// Flaps is how many times phase flap sets a node's underlay link
	// down and up again.
	Flaps int
	// Phases are the phases to run (empty: all), in ChaosPhases' order.
	Phases []string
}

// DefaultChaos is `weft bench chaos`'s run.
func DefaultChaos() ChaosConfig {
	return ChaosConfig{Nodes: 3, PodsPerNode: 2, Backend: cluster.BackendAuto, Churn: 200, Kills: 6, LeaseTTL: 10 * time.Second, Flaps: 3}
}

func (c ChaosConfig) runs(phase string) bool {
	return len(c.Phases) == 0 || slices.Contains(c.Phases, phase)
}

func (c ChaosConfig) validate() error {
	for _, p := range c.Phases {
		if !slices.Contains(ChaosPhases, p) {
			return fmt.Errorf("unknown chaos phase %q (have %s)", p, strings.Join(ChaosPhases, ", "))
		}
	}
	switch {
	case c.Nodes < 2:
		return fmt.Errorf("--nodes %d: a chaos run needs at least 2", c.Nodes)
	case c.PodsPerNode < 1:
		return fmt.Errorf("--pods-per-node %d: want at least 1", c.PodsPerNode)
	case c.Churn < 0 || c.Churn > 2000:
		return fmt.Errorf("--churn %d: want 0 to 2000", c.Churn)
	case c.Kills < 0 || c.Kills > c.Churn:
		return fmt.Errorf("--kills %d: want 0 to --churn", c.Kills)
	case c.LeaseTTL < time.Second || c.LeaseTTL > 2*time.Minute:
		return fmt.Errorf("--lease-ttl %s: want 1s to 2m (the outages last twice as long)", c.LeaseTTL)
	case c.Flaps < 1 || c.Flaps > 20:
		return fmt.Errorf("--flaps %d: want 1 to 20", c.Flaps)
	}
	return nil
}

// ChaosPhase is what one phase measured: figures to print, and the
// invariants it saw broken.
type ChaosPhase struct {
	Name string
	// Sent and Lost count the echoes between pods that lived through the
	// phase (one per pair every 200 ms).
	Sent, Lost int
	Figures    []string
	Broken     []string
}

func (p *ChaosPhase) figure(format string, args ...any) {
	p.Figures = append(p.Figures, fmt.Sprintf(format, args...))
}

func (p *ChaosPhase) broke(format string, args ...any) {
	p.Broken = append(p.Broken, fmt.Sprintf(format, args...))
}

// ChaosReport is a chaos run's outcome.
type ChaosReport struct {
	Lab    string
	Phases []*ChaosPhase
}

// Broken lists every invariant the run saw broken, as "phase: what".
func (r *ChaosReport) Broken() []string {
	var b []string
	for _, p := range r.Phases {
		for _, s := range p.Broken {
			b = append(b, p.Name+": "+s)
		}
	}
	return b
}

// Print writes the figures of every phase and a summary table.
func (r *ChaosReport) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos run in lab %s\n", r.Lab)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%s:\n", p.Name)
		for _, f := range p.Figures {
			fmt.Fprintf(w, "  %s\n", f)
		}
		for _, b := range p.Broken {
			fmt.Fprintf(w, "  BROKEN: %s\n", b)
		}
	}
	fmt.Fprintf(w, "\n%-15s %8s %8s  %s\n", "phase", "echoes", "lost", "invariants")
	for _, p := range r.Phases {
		inv := "ok"
		if len(p.Broken) > 0 {
			inv = fmt.Sprintf("%d broken", len(p.Broken))
		}
		fmt.Fprintf(w, "%-15s %8d %8d  %s\n", p.Name, p.Sent, p.Lost, inv)
	}
}

// Chaos builds a lab with a short lease TTL, runs the chaos phases on it
// while probing the pods that live through each phase, ends with every
// node's `weft doctor` and the full matrix, and removes the lab. It
// returns the report and an error only when the run itself could not go
// on; broken invariants are in the report.
func Chaos(ctx context.Context, o Options, c ChaosConfig) (*ChaosReport, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	cfg := lab.DefaultConfig()
	cfg.Name = c.Name
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("chaos%04d", rand.IntN(1e4))
	}
	cfg.WeftBin, cfg.CNIBin = o.WeftBin, o.CNIBin
	cfg.Backend, cfg.Nodes, cfg.PodsPerNode = c.Backend, c.Nodes, c.PodsPerNode
	cfg.LeaseTTL = c.LeaseTTL
	cfg.Log = o.Log
	rep := &ChaosReport{Lab: cfg.Name}
	err := withLab(ctx, cfg, func(l *lab.Lab) error {
		ch := &chaos{l: l, c: c, log: o.Log}
		steps := []struct {
			name string
			run  func(context.Context, *ChaosPhase) error
		}{
			{PhaseChurn, ch.churn},
			{PhaseCrash, func(ctx context.Context, p *ChaosPhase) error { return ch.datastoreDown(ctx, p, true) }},
			{PhaseDatastore, func(ctx context.Context, p *ChaosPhase) error { return ch.datastoreDown(ctx, p, false) }},
			{PhaseAgent, ch.agentDown},
			{PhaseReboot, ch.reboot},
			{PhaseFlap, ch.flap},
			{"end", ch.end},
		}
		for _, s := range steps {
			if s.name != "end" && !c.runs(s.name) {
				continue
			}
			p := &ChaosPhase{Name: s.name}
			rep.Phases = append(rep.Phases, p)
			fmt.Fprintf(o.Log, "chaos: phase %s\n", s.name)
			if err := s.run(ctx, p); err != nil {
				p.broke("%v", err)
				// A phase that could not finish leaves the lab in no
				// state worth measuring further; the end checks still
				// say what is left.
				if s.name != "end" {
					e := &ChaosPhase{Name: "end"}
					rep.Phases = append(rep.Phases, e)
					if err := ch.end(ctx, e); err != nil {
						e.broke("%v", err)
					}
				}
				break
			}
		}
		if len(rep.Broken()) > 0 {
			logTails(o.Log, l)
		}
		return nil
	})
	return rep, err
}

// logTails writes the end of every agent's log and of the datastore's,
// for a run that broke an invariant: the lab and its logs go with it.
func logTails(w io.Writer, l *lab.Lab) {
	logs := [][2]string{{"datastore", l.State.Datastore.Log}}
	for _, n := range l.Nodes {
		logs = append(logs, [2]string{"agent of " + n.Name, n.AgentLog})
	}
	for _, lg := range logs {
		b, err := os.ReadFile(lg[1])
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		lines = lines[max(0, len(lines)-25):]
		fmt.Fprintf(w, "--- end of the log of the %s (%s):\n%s\n", lg[0], lg[1], strings.Join(lines, "\n"))
	}
}

type chaos struct {
	l   *lab.Lab
	c   ChaosConfig
	log io.Writer
}

func (ch *chaos) logf(format string, args ...any) {
	fmt.Fprintf(ch.log, "chaos: "+format+"\n", args...)
}

// probeInterval is how often each pair of long-lived pods exchanges an
// echo; a batch of probeBatch echoes is one ping run, which waits
// probeWait after its last echo for late replies. The lab's round trips
// take well under a millisecond; a short wait keeps the echo rate close
// to one per interval while replies are missing, so that lost echoes
// measure how long a pair was cut off (about lost × 200 ms).
const (
	probeInterval = 200 * time.Millisecond
	probeBatch    = 5
	probeWait     = 250 * time.Millisecond
)

// prober pings every ordered pair of its pods, one echo per pair every
// probeInterval, until stopped. Echoes go in batches so that stopping
// never cuts off an echo whose reply is still on its way (which would
// count as lost).
type prober struct {
	stop       atomic.Bool
	wg         sync.WaitGroup
	mu         sync.Mutex
	sent, lost int
	pairs      map[string]int // lost echoes by "from→to"
	err        error
}

func startProber(ctx context.Context, pods []*lab.PodState) *prober {
	p := &prober{pairs: map[string]int{}}
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			p.wg.Go(func() {
				for !p.stop.Load() && ctx.Err() == nil {
					r, err := lab.Ping(ctx, src.Netns, dst.IP, probeBatch, probeInterval, probeWait)
					p.mu.Lock()
					p.sent += r.Sent
					p.lost += r.Lost()
					if r.Lost() > 0 {
						p.pairs[src.Name+"→"+dst.Name] += r.Lost()
					}
					if err != nil && p.err == nil {
						p.err = err
					}
					p.mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
	}
	return p
}

// halt stops the prober and waits for its last batches; a phase that
// fails halfway defers it.
func (p *prober) halt() {
	p.stop.Store(true)
	p.wg.Wait()
}

// finish stops the prober, waits for its last batches and records its
// counts in phase.
func (p *prober) finish(phase *ChaosPhase) error {
	p.halt()
	phase.Sent, phase.Lost = p.sent, p.lost
	lost := fmt.Sprintf("%d of %d echoes lost between pods that lived through the phase", p.lost, p.sent)
	if len(p.pairs) > 0 {
		var ps []string
		for k, v := range p.pairs {
			ps = append(ps, fmt.Sprintf("%s %d", k, v))
		}
		slices.Sort(ps)
		lost += " (" + strings.Join(ps, ", ") + ")"
	}
	phase.figure("%s", lost)
	if p.err != nil {
		return fmt.Errorf("probe: %w", p.err)
	}
	return nil
}

// fullMatrix waits for every pod to reach every other and returns how
// long that took.
func (ch *chaos) fullMatrix(ctx context.Context, phase *ChaosPhase, since time.Time, what string) error {
	if _, err := ch.l.WaitMatrix(ctx, 60*time.Second); err != nil {
		phase.broke("matrix not full after %s: %v", what, err)
		return nil
	}
	phase.figure("full matrix %s after %s", time.Since(since).Round(time.Millisecond), what)
	return nil
}

// audit compares every node's IPAM leases with the pods the runtime (the
// lab) holds: an address leased or held twice is a duplicate, a lease no
// live pod holds is leaked, a live pod without its lease is unaccounted.
func (ch *chaos) audit(phase *ChaosPhase) error {
	holders := map[string][]string{} // address → pods and leases holding it
	leases, leaked, missing := 0, 0, 0
	for _, n := range ch.l.Nodes {
		ls, err := ipam.OpenForRelease(ipam.Dir(n.DataDir(), names.NetworkName)).Leases()
		if err != nil {
			return fmt.Errorf("leases of %s: %w", n.Name, err)
		}
		leases += len(ls)
		pods := map[string]*lab.PodState{}
		for _, p := range n.Pods {
			pods[p.ContainerID] = p
			holders[p.IP.String()] = append(holders[p.IP.String()], "pod "+p.Name)
		}
		leased := map[string]bool{}
		for _, le := range ls {
			p, ok := pods[le.ContainerID]
			if !ok || p.IP != le.Addr {
				leaked++
				phase.broke("node %s: lease of %s for %q held by no live pod", n.Name, le.Addr, le.ContainerID)
				holders[le.Addr.String()] = append(holders[le.Addr.String()], "leaked lease "+le.ContainerID)
				continue
			}
			leased[le.ContainerID] = true
		}
		for id, p := range pods {
			if !leased[id] {
				missing++
				phase.broke("node %s: pod %s holds %s without a lease", n.Name, p.Name, p.IP)
			}
		}
	}
	dups := 0
	for addr, hs := range holders {
		if len(hs) > 1 {
			dups++
			phase.broke("address %s held %d times: %s", addr, len(hs), strings.Join(hs, ", "))
		}
	}
	phase.figure("%d live pods, %d leases: %d duplicate addresses, %d leaked leases, %d pods without a lease",
		len(ch.l.Pods()), leases, dups, leaked, missing)
	return nil
}

// waitReady waits for every node's agent.
func (ch *chaos) waitReady(ctx context.Context) error {
	for _, n := range ch.l.Nodes {
		if err := ch.l.WaitAgentReady(ctx, n.Name, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// churn adds and deletes pods through the plugin, spread over the nodes,
// while pods that live throughout are probed, and kills an agent with
// SIGKILL (and starts it again at once) every Churn/(Kills+1) operations.
func (ch *chaos) churn(ctx context.Context, phase *ChaosPhase) error {
	l, c := ch.l, ch.c
	long := l.Pods()
	pr := startProber(ctx, long)
	defer pr.halt()
	start := time.Now()
	var live []*lab.PodState // pods the churn made and has not deleted
	adds, dels, addFail, delFail, kills := 0, 0, 0, 0, 0
	// A few churn pods per node at most: enough to reuse addresses, few
	// enough that the matrix stays small.
	limit := 3 * len(l.Nodes)
	every := max(1, c.Churn/(c.Kills+1))
	for op := 0; op < c.Churn; op++ {
		if c.Kills > 0 && op > 0 && op%every == 0 && kills < c.Kills {
			n := l.Nodes[kills%len(l.Nodes)]
			if err := l.StopAgent(n.Name, syscall.SIGKILL); err != nil {
				return err
			}
			if err := l.StartAgent(n.Name); err != nil {
				return err
			}
			kills++
		}
		if len(live) == 0 || len(live) < limit && rand.IntN(2) == 0 {
			node := l.Nodes[op%len(l.Nodes)].Name
			p, err := l.AddPod(ctx, node)
			adds++
			if err != nil {
				addFail++
				ch.logf("ADD on %s: %v", node, err)
				continue
			}
			live = append(live, p)
			continue
		}
		i := rand.IntN(len(live))
		dels++
		if err := l.DelPod(ctx, live[i].Name); err != nil {
			delFail++
			ch.logf("DEL %s: %v", live[i].Name, err)
			continue
		}
		live = slices.Delete(live, i, i+1)
	}
	churned := time.Since(start)
	if err := ch.waitReady(ctx); err != nil {
		return err
	}
	// The pods the churn left live are part of the audit: their leases
	// must be there. Then they go, and nothing may stay leased for them.
	if err := ch.audit(phase); err != nil {
		return err
	}
	for _, p := range live {
		if err := l.DelPod(ctx, p.Name); err != nil {
			phase.broke("final DEL of %s: %v", p.Name, err)
		}
	}
	if err := pr.finish(phase); err != nil {
		return err
	}
	if phase.Lost > 0 {
		phase.broke("%d echoes lost between long-lived pods", phase.Lost)
	}
	phase.figure("%d operations in %s (%d ADD, %d DEL; %d ADD and %d DEL failed), then %d final DEL; agents killed with SIGKILL: %d",
		c.Churn, churned.Round(time.Millisecond), adds, dels, addFail, delFail, len(live), kills)
	if err := ch.audit(phase); err != nil {
		return err
	}
	return ch.fullMatrix(ctx, phase, time.Now(), "the churn (checked)")
}

// datastoreDown takes the datastore away for twice the lease TTL, killed
// (a crash: nothing of etcd runs meanwhile) or stopped (SIGTERM: etcd
// shuts down gracefully, and may expire leases while it drains its
// streams): the matrix must stay full throughout and every agent keep
// running.
func (ch *chaos) datastoreDown(ctx context.Context, phase *ChaosPhase, kill bool) error {
	l := ch.l
	pr := startProber(ctx, l.Pods())
	defer pr.halt()
	how := "stopped (SIGTERM)"
	if kill {
		how = "killed (SIGKILL)"
		if err := killDatastore(l); err != nil {
			return err
		}
	} else if err := l.StopDatastore(); err != nil {
		return err
	}
	down := 2 * ch.c.LeaseTTL
	select {
	case <-ctx.Done():
		l.StartDatastore(context.Background())
		return ctx.Err()
	case <-time.After(down):
	}
	m, err := l.CheckMatrix(ctx, 1)
	if err != nil {
		l.StartDatastore(context.Background())
		return err
	}
	during := "full"
	if !m.Full() {
		during = fmt.Sprintf("not full (%s)", strings.Join(m.Failures(), ", "))
		phase.broke("matrix not full at the end of the outage")
	}
	for _, n := range l.Nodes {
		if ok, err := l.AgentAlive(n.Name); !ok {
			phase.broke("agent of %s died during the outage: %v", n.Name, err)
		}
	}
	back := time.Now()
	if err := l.StartDatastore(ctx); err != nil {
		return err
	}
	if err := ch.waitReady(ctx); err != nil {
		return err
	}
	phase.figure("datastore %s, down %s (2× lease TTL); matrix at the end of the outage: %s; every agent ready %s after it returned",
		how, down, during, time.Since(back).Round(time.Millisecond))
	if err := pr.finish(phase); err != nil {
		return err
	}
	if phase.Lost > 0 {
		phase.broke("%d echoes lost during the datastore outage", phase.Lost)
	}
	return ch.fullMatrix(ctx, phase, back, "the datastore returned")
}

// agentDown kills the last node's agent for twice the lease TTL and starts
// it again: it must get its subnet back. Losses are reported as seen: a
// peer drops its routes to a node whose lease lapsed.
func (ch *chaos) agentDown(ctx context.Context, phase *ChaosPhase) error {
	l := ch.l
	n := l.Nodes[len(l.Nodes)-1]
	before, err := l.NodeSubnet(n.Name)
	if err != nil {
		return err
	}
	pr := startProber(ctx, l.Pods())
	defer pr.halt()
	if err := l.StopAgent(n.Name, syscall.SIGKILL); err != nil {
		return err
	}
	down := 2 * ch.c.LeaseTTL
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	m, err := l.CheckMatrix(ctx, 1)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := l.StartAgent(n.Name); err != nil {
		return err
	}
	if err := l.WaitAgentReady(ctx, n.Name, 60*time.Second); err != nil {
		return err
	}
	ready := time.Since(start)
	after, err := l.NodeSubnet(n.Name)
	if err != nil {
		return err
	}
	if err := ch.fullMatrix(ctx, phase, start, "the agent's restart"); err != nil {
		return err
	}
	if err := pr.finish(phase); err != nil {
		return err
	}
	during := "full"
	if !m.Full() {
		during = fmt.Sprintf("%d of %d pairs failing", len(m.Failures()), len(m.Pods)*(len(m.Pods)-1))
	}
	same := "same subnet"
	if after != before {
		same = "subnet CHANGED"
		phase.broke("agent of %s came back with subnet %s, not %s", n.Name, after, before)
	}
	phase.figure("agent of %s down %s (2× lease TTL); matrix at the end of the downtime: %s; ready %s after its start, %s (%s → %s)",
		n.Name, down, during, ready.Round(time.Millisecond), same, before, after)
	return nil
}

// reboot reboots the second node (lab.RebootNode): the runtime's CNI DEL
// for the pods that died with it once its agent is back, and as many new
// pods. Pods on the other nodes are probed throughout.
func (ch *chaos) reboot(ctx context.Context, phase *ChaosPhase) error {
	l := ch.l
	n := l.Nodes[1]
	before, err := l.NodeSubnet(n.Name)
	if err != nil {
		return err
	}
	var others []*lab.PodState
	for _, o := range l.Nodes {
		if o != n {
			others = append(others, o.Pods...)
		}
	}
	dead := slices.Clone(n.Pods)
	pr := startProber(ctx, others)
	defer pr.halt()
	start := time.Now()
	if err := l.RebootNode(n.Name); err != nil {
		return err
	}
	if err := l.StartAgent(n.Name); err != nil {
		return err
	}
	if err := l.WaitAgentReady(ctx, n.Name, 60*time.Second); err != nil {
		return err
	}
	ready := time.Since(start)
	for _, p := range dead {
		if err := l.DelPod(ctx, p.Name); err != nil {
			phase.broke("CNI DEL of %s, dead with the reboot: %v", p.Name, err)
		}
	}
	for range dead {
		if _, err := l.AddPod(ctx, n.Name); err != nil {
			return fmt.Errorf("re-add a pod on %s: %w", n.Name, err)
		}
	}
	readded := time.Since(start)
	if err := ch.fullMatrix(ctx, phase, start, "the reboot"); err != nil {
		return err
	}
	if err := pr.finish(phase); err != nil {
		return err
	}
	if phase.Lost > 0 {
		phase.broke("%d echoes lost between pods of other nodes", phase.Lost)
	}
	after, err := l.NodeSubnet(n.Name)
	if err != nil {
		return err
	}
	if after != before {
		phase.broke("node %s came back with subnet %s, not %s", n.Name, after, before)
	}
	phase.figure("node %s rebooted: agent ready %s after, %d pods re-added %s after (subnet %s → %s)",
		n.Name, ready.Round(time.Millisecond), len(dead), readded.Round(time.Millisecond), before, after)
	return ch.audit(phase)
}

// flap sets the first node's underlay link down and up Flaps times, a
// second each way.
func (ch *chaos) flap(ctx context.Context, phase *ChaosPhase) error {
	l := ch.l
	n := l.Nodes[0]
	pr := startProber(ctx, l.Pods())
	defer pr.halt()
	set := func(up bool) error {
		return ns.WithNetNSPath(netns.Path(n.Netns), func(ns.NetNS) error {
			link, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			if up {
				return netlink.LinkSetUp(link)
			}
			return netlink.LinkSetDown(link)
		})
	}
	var lastUp time.Time
	for i := 0; i < ch.c.Flaps; i++ {
		if err := set(false); err != nil {
			set(true)
			return fmt.Errorf("set %s's underlay link down: %w", n.Name, err)
		}
		time.Sleep(time.Second)
		if err := set(true); err != nil {
			return fmt.Errorf("set %s's underlay link up: %w", n.Name, err)
		}
		lastUp = time.Now()
		time.Sleep(time.Second)
	}
	if err := ch.fullMatrix(ctx, phase, lastUp, "the last link up"); err != nil {
		return err
	}
	if err := pr.finish(phase); err != nil {
		return err
	}
	phase.figure("underlay link of %s flapped %d times (1 s down, 1 s up)", n.Name, ch.c.Flaps)
	return nil
}

// end checks what every run must end with: every agent ready, no
// duplicate or leaked address, `weft doctor` healthy on every node and
// the full matrix with three echoes a pair.
func (ch *chaos) end(ctx context.Context, phase *ChaosPhase) error {
	l := ch.l
	if err := ch.waitReady(ctx); err != nil {
		return err
	}
	if err := ch.audit(phase); err != nil {
		return err
	}
	if _, err := l.WaitMatrix(ctx, 60*time.Second); err != nil {
		phase.broke("matrix: %v", err)
	}
	m, err := l.CheckMatrix(ctx, 3)
	if err != nil {
		return err
	}
	if !m.Full() {
		phase.broke("matrix with 3 echoes a pair not full: %s", strings.Join(m.Failures(), ", "))
	}
	pairs := len(m.Pods) * (len(m.Pods) - 1)
	phase.figure("matrix: %d/%d pod pairs connected with 3 echoes each", pairs-len(m.Failures()), pairs)
	healthy := 0
	for _, n := range l.Nodes {
		bad, err := runDoctor(ctx, l, n)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			phase.broke("weft doctor on %s: %s", n.Name, strings.Join(bad, "; "))
			continue
		}
		healthy++
	}
	phase.figure("weft doctor healthy on %d of %d nodes", healthy, len(l.Nodes))
	return nil
}

// runDoctor runs `weft doctor` in node's namespace, pointed at its
// directories, leases counting as leaked after a second (nothing is being
// added at the end of a run), and returns its failed findings.
func runDoctor(ctx context.Context, l *lab.Lab, n *lab.NodeState) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.WeftBin, "doctor", "-o", "json", "--timeout", "500ms", "--tries", "2",
		"--leak-grace", "1s", "--run-dir", n.RunDir(), "--data-dir", n.DataDir(), "--cni-conf-dir", n.CNIConfDir(), "--cni-bin-dir", l.BinDir)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := netns.Start(netns.Path(n.Netns), cmd); err != nil {
		return nil, fmt.Errorf("weft doctor on %s: %w", n.Name, err)
	}
	runErr := cmd.Wait()
	var rep doctor.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("weft doctor on %s: %v (%v): %s", n.Name, err, runErr, strings.TrimSpace(stderr.String()))
	}
	var bad []string
	for _, f := range rep.Findings {
		if f.Result == doctor.Fail {
			bad = append(bad, strings.TrimSpace(f.Check+" "+f.Peer)+": "+f.Detail)
		}
	}
	var ee *exec.ExitError
	if runErr != nil && len(bad) == 0 {
		if errors.As(runErr, &ee) {
			bad = append(bad, fmt.Sprintf("exit %v with no failed finding", runErr))
		} else {
			return nil, fmt.Errorf("weft doctor on %s: %w", n.Name, runErr)
		}
	}
	return bad, nil
}

// killDatastore kills the lab's datastore with SIGKILL, as a crash would,
// and waits until it is gone; StartDatastore starts it again.
func killDatastore(l *lab.Lab) error {
	pid := l.State.Datastore.PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill the datastore (pid %d): %w", pid, err)
	}
	// The lab reaps the process it started; until then it is a zombie
	// whose /proc entry stays.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || zombie(b) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("datastore (pid %d) still there 10s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// zombie reports whether a /proc/PID/stat line is a zombie's or a dead
// process's (the state follows the command name's closing parenthesis).
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}
