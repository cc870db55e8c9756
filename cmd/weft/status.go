package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
)

func init() {
	register("status", "this node's network: subnet, backend, datastore, peers, pods, health", runStatus)
}

func runStatus(args []string) error {
	return readAgent("status", args, (*agentapi.Client).Status, printStatus)
}

func printStatus(w io.Writer, s agentapi.Status) {
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%-10s %s\n", k+":", fmt.Sprintf(format, a...)) }
	line("Node", "%s", s.Node)
	if s.ClusterCIDR.IsValid() {
		line("Subnet", "%s (cluster %s)", orNone(s.Subnet.String(), s.Subnet.IsValid()), s.ClusterCIDR)
	} else {
		line("Subnet", "%s", orNone(s.Subnet.String(), s.Subnet.IsValid()))
	}
	line("Backend", "%s, pod MTU %d", s.Backend, s.MTU)
	ds := s.Datastore.Kind
	if s.Datastore.Endpoint != "" {
		ds += " " + s.Datastore.Endpoint
	}
	if s.Datastore.Healthy {
		ds += ", healthy"
		if !s.Datastore.LastContact.IsZero() {
			ds += fmt.Sprintf(" (last contact %s ago)", ago(s.Datastore.LastContact))
		}
	} else {
		ds += ", UNHEALTHY"
		if s.Datastore.Error != "" {
			ds += ": " + s.Datastore.Error
		}
		// How long it has been unreachable is what decides what to do.
		if s.Datastore.LastContact.IsZero() {
			ds += " (never reached)"
		} else {
			ds += fmt.Sprintf(" (last contact %s ago)", ago(s.Datastore.LastContact))
		}
	}
	line("Datastore", "%s", ds)
	peers := fmt.Sprintf("%d", s.Peers)
	if s.Unreachable > 0 {
		peers += fmt.Sprintf(", %d UNREACHABLE for longer than the threshold (see weft peers)", s.Unreachable)
	}
	line("Peers", "%s", peers)
	line("Pods", "%d on this node; addresses %d used, %d free", s.Pods, s.AddressesUsed, s.AddressesFree)
	line("Agent", "%s, up %s", s.Version, (time.Duration(s.UptimeSeconds) * time.Second).String())
	if len(s.Degraded) == 0 {
		line("Degraded", "nothing")
		return
	}
	line("Degraded", "%d item(s)", len(s.Degraded))
	for _, d := range s.Degraded {
		fmt.Fprintf(w, "  - %s\n", d)
	}
}

func orNone(s string, ok bool) string {
	if !ok {
		return "none yet"
	}
	return s
}

// ago renders how long ago t was, to the second ("45s", "2m", "1h3m10s").
func ago(t time.Time) string {
	d := max(time.Since(t).Round(time.Second), 0)
	s := d.String()
	if d >= time.Minute {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
