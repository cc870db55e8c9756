package policyctl

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/internal/netpolnft"
)

// collector exports the policy table's drop counters, read from the
// kernel at each scrape, and the controller's apply durations.
type collector struct {
	applies  prometheus.Histogram
	failures prometheus.Counter
	dropped  *prometheus.Desc
	unknown  *prometheus.Desc
	invalid  *prometheus.Desc

	// hints counts the pod addresses the CNI plugin reported, by result.
	hints *prometheus.CounterVec
}

func newCollector() *collector {
	return &collector{
		applies: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_policy_apply_seconds",
			Help:    "Time to compile the cluster's NetworkPolicies and apply the difference to nftables.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_policy_apply_errors_total",
			Help: "NetworkPolicy applies that failed (retried on the next change or resync).",
		}),
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_policy_address_hints_total",
			Help: "Pod addresses reported by the CNI plugin at ADD, by result: accepted (the pod's verdicts applied before its status has the address) or why refused.",
		}, []string{"result"}),
		dropped: prometheus.NewDesc("weft_policy_dropped_packets_total",
			"Packets dropped at pods the policy isolates, none of whose policies allowed them.", []string{"policy"}, nil),
		unknown: prometheus.NewDesc("weft_policy_unknown_pod_dropped_packets_total",
			"Packets dropped to or from a local pod address that had no verdicts yet.", nil, nil),
		invalid: prometheus.NewDesc("weft_policy_invalid_dropped_packets_total",
			"Packets in no connection (conntrack invalid or untracked), dropped to or from a local pod while policies exist.", nil, nil),
	}
}

func (c *collector) observe(d time.Duration, err error) {
	c.applies.Observe(d.Seconds())
	if err != nil {
		c.failures.Inc()
	}
}

// Collector is what the agent registers on its metrics registry.
func (c *Controller) Collector() prometheus.Collector { return c.metrics }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.applies.Describe(ch)
	c.failures.Describe(ch)
	c.hints.Describe(ch)
	ch <- c.dropped
	ch <- c.unknown
	ch <- c.invalid
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.applies.Collect(ch)
	c.failures.Collect(ch)
	c.hints.Collect(ch)
	d, err := netpolnft.ReadDrops()
	if err != nil {
		return // no table yet: nothing dropped
	}
	for p, n := range d.ByPolicy {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(c.unknown, prometheus.CounterValue, float64(d.Unknown))
	ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.CounterValue, float64(d.Invalid))
}
