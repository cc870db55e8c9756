package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/weftnet/weft/internal/cnievents"
)

// sample finds one sample by name and labels in what the registry gathers.
func sample(t *testing.T, m *Metrics, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range s.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return s
		}
	}
	return nil
}

func counter(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	s := sample(t, m, name, labels)
	if s == nil {
		return -1
	}
	return s.GetCounter().GetValue()
}

func TestCNIEventsBecomeSamples(t *testing.T) {
	m := New()
	l, err := cnievents.Listen(filepath.Join(t.TempDir(), "cni-events.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.ConsumeCNIEvents(ctx, l.Events(), nil); close(done) }()
	t.Cleanup(func() { cancel(); l.Close(); <-done })

	// What the plugin sends: three good ADDs, a failed one, a DEL, a CHECK
	// and something that is no verb at all.
	events := []cnievents.Event{
		{Verb: "ADD", OK: true, Seconds: 0.012}, {Verb: "ADD", OK: true, Seconds: 0.020},
		{Verb: "ADD", OK: true, Seconds: 0.015}, {Verb: "ADD", OK: false, Seconds: 0.300},
		{Verb: "DEL", OK: true, Seconds: 0.004}, {Verb: "CHECK", OK: true, Seconds: 0.002},
		{Verb: "REBOOT", OK: true, Seconds: 1},
	}
	for _, ev := range events {
		cnievents.Send(l.Path(), ev)
	}

	deadline := time.Now().Add(5 * time.Second)
	for counter(t, m, "weft_cni_events_invalid_total", nil) < 1 || counter(t, m, "weft_cni_requests_total", map[string]string{"verb": "CHECK", "result": "success"}) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("events never reached the metrics")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range []struct {
		verb, result string
		want         float64
	}{{"ADD", "success", 3}, {"ADD", "error", 1}, {"DEL", "success", 1}, {"DEL", "error", 0}, {"CHECK", "success", 1}, {"GC", "success", 0}} {
		if got := counter(t, m, "weft_cni_requests_total", map[string]string{"verb": c.verb, "result": c.result}); got != c.want {
			t.Errorf("weft_cni_requests_total{verb=%s,result=%s} = %v, want %v", c.verb, c.result, got, c.want)
		}
	}
	h := sample(t, m, "weft_cni_request_duration_seconds", map[string]string{"verb": "ADD"}).GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() < 0.346 || h.GetSampleSum() > 0.348 {
		t.Errorf("ADD latency histogram: count %d sum %v, want 4 and 0.347", h.GetSampleCount(), h.GetSampleSum())
	}
	if s := sample(t, m, "weft_cni_requests_total", map[string]string{"verb": "REBOOT"}); s != nil {
		t.Error("an unknown verb became a label value")
	}
}

func TestAgentMetricsAreExposed(t *testing.T) {
	m := New()
	m.SetPeers(map[string]int{"reachable": 3, "unreachable": 1}, 1)
	m.SetPeerRTTs(map[string]time.Duration{"node-b": 250 * time.Microsecond})
	m.ObserveReconcile(3*time.Millisecond, nil)
	m.ObserveReconcile(5*time.Millisecond, errors.New("route add: no such device"))
	m.SetDatapathEntries("route", 3)
	m.DatapathChanged("fdb", "add", 2)
	m.SetIPAM(4, 249)
	m.LeaseRenewed(nil)
	m.LeaseRenewed(errors.New("etcd: timeout"))
	m.DatastoreError("watch")
	m.SetDatastoreUp(true)
	m.SetFirewallDrops(map[string]uint64{"spoofed-source": 7})

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`weft_peers{state="reachable"} 3`, `weft_peers{state="unreachable"} 1`, `weft_peers{state="unknown"} 0`, `weft_peers_down 1`,
		`weft_peer_probe_rtt_seconds{peer="node-b"} 0.00025`,
		`weft_reconcile_duration_seconds_count 2`, `weft_reconcile_errors_total 1`,
		`weft_datapath_entries{kind="route"} 3`, `weft_datapath_changes_total{kind="fdb",op="add"} 2`,
		`weft_ipam_addresses_used 4`, `weft_ipam_addresses_free 249`,
		`weft_lease_renewals_total{result="success"} 1`, `weft_lease_renewals_total{result="error"} 1`,
		`weft_datastore_errors_total{op="watch"} 1`,
		`weft_firewall_dropped_packets_total{reason="spoofed-source"} 7`, `weft_firewall_dropped_packets_total{reason="vxlan-not-a-peer"} 0`, `weft_datastore_up 1`, `weft_build_info{version=`, `go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// Prometheus' naming conventions, checked on everything Weft defines.
func TestNamesFollowConventions(t *testing.T) {
	m := New()
	m.ObserveCNI("ADD", true, time.Millisecond)
	m.ObserveReconcile(time.Millisecond, nil)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "weft_") {
			continue
		}
		n++
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_HISTOGRAM:
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s does not end in its unit", name)
			}
		case dto.MetricType_GAUGE:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("gauge %s ends in _total", name)
			}
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	if n < 11 {
		t.Errorf("only %d weft_ metrics gathered", n)
	}
}
