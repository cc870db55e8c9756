// Package preflight checks a node before Weft runs on it and explains
// every finding: the cluster's and Weft's ports (taken by another process
// or dropped by a local nftables/iptables rule), the kernel features Weft
// needs, forwarding and br_netfilter settings, CNI configs that would win
// over Weft's, a cluster CIDR that collides with the node's own routes, and
// an underlay MTU too small for VXLAN. What a firewall rule does to a port
// is worked out by package nfeval; preflight asks and explains. It only
// reads: the one thing it creates is a throwaway network namespace to try
// the kernel features in, which disappears with it.
package preflight

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/names"
)

// Result of one check.
type Result string

const (
	Pass Result = "pass"
	Warn Result = "warn"
	Fail Result = "fail"
)

func worse(a, b Result) Result {
	rank := map[Result]int{Pass: 0, Warn: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
	// Detail says what was found; Fix what to do about it (empty on pass).
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is every check, in order.
type Report struct {
	Role   Role    `json:"role"`
	Checks []Check `json:"checks"`
}

// Failed reports whether any check failed.
func (r Report) Failed() bool { return r.Count(Fail) > 0 }

// Count returns how many checks have the result.
func (r Report) Count(res Result) int {
	n := 0
	for _, c := range r.Checks {
		if c.Result == res {
			n++
		}
	}
	return n
}

// Role is the node's part in the cluster; the ports it needs differ.
type Role string

const (
	ControlPlane Role = "control-plane"
	Worker       Role = "worker"
)

// ParseRole accepts "control-plane" and "worker".
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case ControlPlane, Worker:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q: want %s or %s", s, ControlPlane, Worker)
}

// Options of a preflight run.
type Options struct {
	Role Role
	// ConfDir is the CNI config directory the runtime reads.
	ConfDir string
	// ClusterCIDR, when set, is checked against the node's routes.
	ClusterCIDR netip.Prefix
	// Underlay is the interface the node's traffic to other nodes leaves
	// by; empty means the interface of the default route.
	Underlay string
	// VXLANPort, HealthPort, MetricsPort and ProbePort are Weft's own
	// ports.
	VXLANPort, HealthPort, MetricsPort, ProbePort uint16
	// SkipKernel skips the kernel feature checks (and so the throwaway
	// namespace).
	SkipKernel bool
}

// Defaults are the options for a node set up the standard way.
func Defaults(role Role) Options {
	return Options{Role: role, ConfDir: names.CNIConfDir,
		VXLANPort: names.VXLANPort, HealthPort: names.HealthPort, MetricsPort: names.MetricsPort, ProbePort: names.ProbePort}
}

// Run runs every check in the calling thread's network namespace (the
// caller must hold its OS thread if that is not the process's own).
func Run(o Options) (Report, error) {
	if _, err := ParseRole(string(o.Role)); err != nil {
		return Report{}, err
	}
	r := Report{Role: o.Role}
	r.Checks = append(r.Checks, portChecks(o)...)
	if !o.SkipKernel {
		r.Checks = append(r.Checks, kernelChecks()...)
	}
	r.Checks = append(r.Checks, sysctlChecks()...)
	r.Checks = append(r.Checks, cniConfCheck(o.ConfDir))
	r.Checks = append(r.Checks, otherCNILinksCheck())
	if o.ClusterCIDR.IsValid() {
		r.Checks = append(r.Checks, clusterCIDRCheck(o.ClusterCIDR))
	}
	r.Checks = append(r.Checks, mtuCheck(o.Underlay))
	return r, nil
}
