package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"k8s.io/client-go/dynamic"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/policyctl"
)

// kubeClient is the Kubernetes datastore's dynamic client, set by
// openKube: the NetworkPolicy controller watches through the same one.
var kubeClient dynamic.Interface

// policyRunner enforces NetworkPolicy in Kubernetes mode (nil in etcd
// mode, which has no policies to read). explain answers `weft policy`
// from the running controller; onCNI hands it the plugin's events (a new
// pod's address at ADD), dropped while no controller runs.
func policyRunner(node, procSysNet string, dropLog netpolnft.DropLog, m *metrics.Metrics, log *slog.Logger) (run agent.PolicyRunner, explain func(ns, name string) (netpol.Explanation, error), onCNI func(cnievents.Event)) {
	client := kubeClient
	if client == nil {
		return nil, nil, nil
	}
	var mu sync.Mutex
	var running *policyctl.Controller
	explain = func(ns, name string) (netpol.Explanation, error) {
		mu.Lock()
		ctl := running
		mu.Unlock()
		if ctl == nil {
			return netpol.Explanation{}, errors.New("the NetworkPolicy controller has not started yet (the agent has no lease yet)")
		}
		return ctl.Explain(ns, name)
	}
	onCNI = func(ev cnievents.Event) {
		mu.Lock()
		ctl := running
		mu.Unlock()
		if ctl != nil {
			ctl.CNIEvent(ev)
		}
	}
	return func(ctx context.Context, cidrs []netip.Prefix, report func(string)) error {
		ctl, err := policyctl.New(policyctl.Config{Client: client, NodeName: node, NodeCIDRs: cidrs, Logger: log, ProcSysNet: procSysNet, DropLog: dropLog, Report: report})
		if err != nil {
			return err
		}
		mu.Lock()
		running = ctl
		mu.Unlock()
		if m != nil {
			if err := m.Registry().Register(ctl.Collector()); err != nil {
				log.Warn("policy metrics not registered", "err", err)
			}
		}
		return ctl.Run(ctx)
	}, explain, onCNI
}
