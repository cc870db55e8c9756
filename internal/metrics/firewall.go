package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/internal/firewall"
)

// firewallDrops exposes the nftables drop counters of Weft's guards. The
// kernel counts; the agent copies the counts here (SetFirewallDrops), and
// they are served as they were last read. A counter starts again from 0
// when its table is replaced (drift repair), which Prometheus' rate()
// takes as a reset.
type firewallDrops struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	n    map[string]uint64
}

func newFirewallDrops() *firewallDrops {
	d := &firewallDrops{
		desc: prometheus.NewDesc("weft_firewall_dropped_packets_total",
			"Packets Weft's nftables guards dropped, by reason: VXLAN from a host that is no peer (vxlan-not-a-peer), carrying anything but an untagged IPv4 frame (vxlan-inner-type) or a source outside the sending peer's subnet (vxlan-inner-source); from a pod, a datagram to a VXLAN port of anything but a pod (pod-vxlan), IPv4 or ARP not from its own address and MAC (spoofed-source, spoofed-arp), or neither IPv4 nor ARP (pod-not-ipv4).",
			[]string{"reason"}, nil),
		n: map[string]uint64{},
	}
	for _, r := range firewall.DropReasons { // each exists from the start, at 0

		d.n[r] = 0
	}
	return d
}

func (d *firewallDrops) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *firewallDrops) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for r, n := range d.n {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(n), r)
	}
}

// SetFirewallDrops records the guards' drop counters as read from the
// kernel, by reason.
func (m *Metrics) SetFirewallDrops(byReason map[string]uint64) {
	m.firewallDrops.mu.Lock()
	defer m.firewallDrops.mu.Unlock()
	for r, n := range byReason {
		m.firewallDrops.n[r] = n
	}
}
