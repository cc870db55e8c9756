package agent

import (
	"context"
	"net/netip"
	"sync"
)

// PolicyRunner enforces NetworkPolicy for the node's pod subnets until ctx
// ends (package policyctl in Kubernetes mode). It must leave the kernel's
// table in place when it returns: policy is enforced while the agent
// restarts. It calls report with what keeps enforcement from being whole
// (empty once it is), for the agent's status.
type PolicyRunner func(ctx context.Context, podCIDRs []netip.Prefix, report func(problem string)) error

// startPolicy runs the policy runner, if any, for the leased subnet. A
// failure is logged, not fatal: routing the node's pods matters more than
// this node's enforcement, and the table keeps its last verdicts.
func (a *Agent) startPolicy(ctx context.Context, wg *sync.WaitGroup, subnet netip.Prefix) {
	if a.cfg.Policy == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		report := func(problem string) { a.update(func(s *Status) { s.PolicyError = problem }) }
		if err := a.cfg.Policy(ctx, []netip.Prefix{subnet}, report); err != nil && ctx.Err() == nil {
			a.log.Error("NetworkPolicy enforcement stopped; the last verdicts stay in force", "err", err)
			a.update(func(s *Status) { s.PolicyError = err.Error() })
		}
	}()
}
