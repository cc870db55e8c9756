package main

import (
	"context"
	"log/slog"
	"net/netip"

	"k8s.io/client-go/dynamic"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/policyctl"
)

// kubeClient is the Kubernetes datastore's dynamic client, set by
// openKube: the NetworkPolicy controller watches through the same one.
var kubeClient dynamic.Interface

// policyRunner enforces NetworkPolicy in Kubernetes mode (nil in etcd
// mode, which has no policies to read).
func policyRunner(node, procSysNet string, m *metrics.Metrics, log *slog.Logger) agent.PolicyRunner {
	client := kubeClient
	if client == nil {
		return nil
	}
	return func(ctx context.Context, cidrs []netip.Prefix, report func(string)) error {
		ctl, err := policyctl.New(policyctl.Config{Client: client, NodeName: node, NodeCIDRs: cidrs, Logger: log, ProcSysNet: procSysNet, Report: report})
		if err != nil {
			return err
		}
		if m != nil {
			if err := m.Registry().Register(ctl.Collector()); err != nil {
				log.Warn("policy metrics not registered", "err", err)
			}
		}
		return ctl.Run(ctx)
	}
}
