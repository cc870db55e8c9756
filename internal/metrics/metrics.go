// Package metrics defines Weft's Prometheus metrics on a registry of their
// own, the calls that update them, and the agent's receiving side of the
// CNI plugin's events (package cnievents). Names follow Prometheus'
// conventions: the weft_ prefix, _total for counters, _seconds for
// durations. It owns no listener: the agent mounts Handler at /metrics on
// its health server.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weftnet/weft/internal/version"
)

// Metrics holds every Weft metric. The zero value is not usable; use New.
type Metrics struct {
	reg *prometheus.Registry

	peers            *prometheus.GaugeVec
	peersDown        prometheus.Gauge
	reconcile        prometheus.Histogram
	reconcileErrors  prometheus.Counter
	datapathEntries  *prometheus.GaugeVec
	datapathChanges  *prometheus.CounterVec
	refusedRecords   *prometheus.GaugeVec
	ipamUsed         prometheus.Gauge
	ipamFree         prometheus.Gauge
	cniRequests      *prometheus.CounterVec
	cniDuration      *prometheus.HistogramVec
	leaseRenewals    *prometheus.CounterVec
	datastoreErrors  *prometheus.CounterVec
	conflicts        *prometheus.CounterVec
	probeRTT         *prometheus.GaugeVec
	cniEventsInvalid prometheus.Counter
	datastoreUp      prometheus.Gauge
	firewallDrops    *firewallDrops
}

// CNI verbs and results as label values.
const (
	ResultSuccess = "success"
	ResultError   = "error"
)

// New registers every metric, plus the Go runtime and process collectors,
// on a fresh registry.
func New() *Metrics {
	m := newMetrics()
	m.register()
	m.zeroLabels()
	return m
}

// newMetrics defines every metric of the agent's.
func newMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_peers",
			Help: "Other nodes this agent programs, by the reachability its probes measured (reachable, unreachable, unknown).",
		}, []string{"state"}),
		peersDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_peers_down",
			Help: "Peers unreachable for longer than the agent's threshold.",
		}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_reconcile_duration_seconds",
			Help:    "Time to compute and apply the datapath for all peers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. 4s
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_reconcile_errors_total",
			Help: "Reconciles that ended in an error.",
		}),
		datapathEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_datapath_entries",
			Help: "Kernel entries the agent has programmed, by kind (route, neighbour, fdb, nft_rule).",
		}, []string{"kind"}),
		datapathChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_datapath_changes_total",
			Help: "Kernel entries added or removed by reconciles, by kind and operation (add, delete).",
		}, []string{"kind", "op"}),
		refusedRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_peer_records_refused",
			Help: "Peer records the datapath refused to program, by reason (see `weft peers` for which and why).",
		}, []string{"reason"}),
		ipamUsed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_ipam_addresses_used",
			Help: "Pod addresses allocated on this node.",
		}),
		ipamFree: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_ipam_addresses_free",
			Help: "Pod addresses still free in this node's subnet.",
		}),
		cniRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_cni_requests_total",
			Help: "CNI plugin invocations on this node, by verb (ADD, DEL, CHECK, GC, STATUS) and result.",
		}, []string{"verb", "result"}),
		cniDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_cni_request_duration_seconds",
			Help:    "CNI plugin run time per verb, as the plugin measured it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms .. 8s
		}, []string{"verb"}),
		leaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_lease_renewals_total",
			Help: "Renewals of this node's subnet lease, by result.",
		}, []string{"result"}),
		datastoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_datastore_errors_total",
			Help: "Failed datastore operations, by operation (lease, renew, watch, list, publish).",
		}, []string{"op"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_datastore_conflicts_total",
			Help: "Bids by other nodes for this node's subnet or underlay address seen in the datastore, by kind (subnet, address).",
		}, []string{"kind"}),
		probeRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_peer_probe_rtt_seconds",
			Help: "Last round trip of the agent's probe to a peer's bridge over the pod network.",
		}, []string{"peer"}),
		cniEventsInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_cni_events_invalid_total",
			Help: "CNI events from the plugin that could not be counted (unknown verb).",
		}),
		datastoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_datastore_up",
			Help: "1 when the agent's last exchange with the datastore worked, 0 when it failed.",
		}),
	}
	m.firewallDrops = newFirewallDrops()
	return m
}

// register registers m's metrics, the build's version and the Go runtime
// and process collectors on m's registry.
func (m *Metrics) register() {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_build_info",
		Help: "Always 1; the version label is the agent's version.",
	}, []string{"version"})
	build.WithLabelValues(version.Version).Set(1)
	m.reg.MustRegister(
		m.peers, m.peersDown, m.reconcile, m.reconcileErrors, m.datapathEntries, m.datapathChanges, m.refusedRecords,
		m.ipamUsed, m.ipamFree, m.cniRequests, m.cniDuration, m.leaseRenewals, m.datastoreErrors,
		m.conflicts, m.probeRTT, m.cniEventsInvalid, m.datastoreUp, m.firewallDrops, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// zeroLabels makes every state and verb exist from the start at 0, so
// that rate() and alerts work before the first event.
func (m *Metrics) zeroLabels() {
	for _, s := range []string{"reachable", "unreachable", "unknown"} {
		m.peers.WithLabelValues(s)
	}
	for _, r := range []string{ResultSuccess, ResultError} {
		m.leaseRenewals.WithLabelValues(r)
	}
	for _, v := range cniVerbs {
		for _, r := range []string{ResultSuccess, ResultError} {
			m.cniRequests.WithLabelValues(v, r)
		}
	}
	for _, k := range ConflictKinds {
		m.conflicts.WithLabelValues(k)
	}
}

var cniVerbs = []string{"ADD", "DEL", "CHECK", "GC", "STATUS"}

// Registry is where the metrics live, for tests and for extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetPeers sets the number of peers in each state (reachable, unreachable,
// unknown) and how many of them are down; states missing from byState are
// set to 0.
func (m *Metrics) SetPeers(byState map[string]int, down int) {
	for _, s := range []string{"reachable", "unreachable", "unknown"} {
		m.peers.WithLabelValues(s).Set(float64(byState[s]))
	}
	m.peersDown.Set(float64(down))
}

// SetPeerRTTs replaces the per-peer RTT gauges; peers not in rtt are
// dropped so that removed nodes do not linger.
func (m *Metrics) SetPeerRTTs(rtt map[string]time.Duration) {
	m.probeRTT.Reset()
	for peer, d := range rtt {
		m.probeRTT.WithLabelValues(peer).Set(d.Seconds())
	}
}

// ObserveReconcile records one reconcile's duration and whether it failed.
func (m *Metrics) ObserveReconcile(d time.Duration, err error) {
	m.reconcile.Observe(d.Seconds())
	if err != nil {
		m.reconcileErrors.Inc()
	}
}

// SetDatapathEntries sets how many entries of kind are programmed.
func (m *Metrics) SetDatapathEntries(kind string, n int) {
	m.datapathEntries.WithLabelValues(kind).Set(float64(n))
}

// DatapathChanged counts entries of kind added (op "add") or removed
// (op "delete") by a reconcile.
func (m *Metrics) DatapathChanged(kind, op string, n int) {
	if n > 0 {
		m.datapathChanges.WithLabelValues(kind, op).Add(float64(n))
	}
}

// SetRefusedRecords sets how many peer records are refused for each
// reason; reasons missing from byReason are set to 0, so that every
// reason the agent knows exists from the first reconcile.
func (m *Metrics) SetRefusedRecords(reasons []string, byReason map[string]int) {
	for _, r := range reasons {
		m.refusedRecords.WithLabelValues(r).Set(float64(byReason[r]))
	}
}

// SetIPAM sets the node's used and free pod addresses.
func (m *Metrics) SetIPAM(used, free int) {
	m.ipamUsed.Set(float64(used))
	m.ipamFree.Set(float64(free))
}

// LeaseRenewed counts one lease renewal and whether it worked.
func (m *Metrics) LeaseRenewed(err error) {
	m.leaseRenewals.WithLabelValues(result(err)).Inc()
}

// SetDatastoreUp records whether the datastore answers.
func (m *Metrics) SetDatastoreUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.datastoreUp.Set(v)
}

// DatastoreError counts a failed datastore operation.
func (m *Metrics) DatastoreError(op string) {
	m.datastoreErrors.WithLabelValues(op).Inc()
}

// ConflictKinds are the kinds weft_datastore_conflicts_total counts (the
// values of store.Conflict.Kind).
var ConflictKinds = []string{"subnet", "address"}

// DatastoreConflict counts one new bid by another node for what this node
// holds.
func (m *Metrics) DatastoreConflict(kind string) {
	m.conflicts.WithLabelValues(kind).Inc()
}

// ObserveCNI records one plugin invocation.
func (m *Metrics) ObserveCNI(verb string, ok bool, d time.Duration) {
	if !knownVerb(verb) {
		m.cniEventsInvalid.Inc()
		return
	}
	r := ResultSuccess
	if !ok {
		r = ResultError
	}
	m.cniRequests.WithLabelValues(verb, r).Inc()
	m.cniDuration.WithLabelValues(verb).Observe(d.Seconds())
}

// knownVerb keeps label values bounded whatever arrives on the socket.
func knownVerb(v string) bool {
	for _, k := range cniVerbs {
		if v == k {
			return true
		}
	}
	return false
}

func result(err error) string {
	if err != nil {
		return ResultError
	}
	return ResultSuccess
}
