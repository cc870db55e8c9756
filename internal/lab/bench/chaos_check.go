package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

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
		worst := 0
		for k, v := range p.pairs {
			ps = append(ps, fmt.Sprintf("%s %d", k, v))
			worst = max(worst, v)
		}
		slices.Sort(ps)
		lost += fmt.Sprintf("; the worst pair went about %s without a reply (%s)",
			(time.Duration(worst) * probeInterval).Round(100*time.Millisecond), strings.Join(ps, ", "))
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
	return ch.doctorHealthy(ctx, phase, time.Now(), "the run's end")
}

// doctorTimeout bounds the wait for `weft doctor` to pass on every node.
const doctorTimeout = 30 * time.Second

// doctorHealthy runs `weft doctor` on every node until it passes on all
// of them, and reports how long after since that was: a node may need a
// moment after an outage (its agent renews a lapsed lease on its next
// try), and what doctor said until then is a figure too. Still failing
// after doctorTimeout breaks the invariant.
func (ch *chaos) doctorHealthy(ctx context.Context, phase *ChaosPhase, since time.Time, what string) error {
	deadline := time.Now().Add(doctorTimeout)
	var first []string
	for {
		var bad []string
		for _, n := range ch.l.Nodes {
			b, err := runDoctor(ctx, ch.l, n)
			if err != nil {
				return err
			}
			for _, f := range b {
				bad = append(bad, n.Name+": "+f)
			}
		}
		if first == nil {
			first = append([]string{}, bad...)
		}
		if len(bad) == 0 {
			phase.figure("weft doctor healthy on all %d nodes %s after %s", len(ch.l.Nodes), time.Since(since).Round(time.Millisecond), what)
			if len(first) > 0 {
				phase.figure("until then doctor said: %s", strings.Join(first, "; "))
			}
			return nil
		}
		if time.Now().After(deadline) {
			phase.broke("weft doctor still failing %s after %s: %s", doctorTimeout, what, strings.Join(bad, "; "))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
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
