package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab"
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
