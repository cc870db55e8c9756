package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
)

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
	if err := ch.fullMatrix(ctx, phase, back, "the datastore returned"); err != nil {
		return err
	}
	return ch.doctorHealthy(ctx, phase, back, "the datastore returned")
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
		// Up for a second before the next flap; the last up is where
		// the time to full matrix starts.
		if i < ch.c.Flaps-1 {
			time.Sleep(time.Second)
		}
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
