// Package netpoltruth holds Weft's NetworkPolicy truth tables, written
// once for both of their readers: the compiler's unit test (internal/netpol),
// which checks the verdicts a compile gives, and the kubelet end-to-end
// test (test/e2e/kubelet), which checks the same tables with real traffic
// between pods on real nodes. Each case is policies, then tables of which
// pod reaches which on a port, then (for some) a change of the cluster and
// the tables that must follow it.
//
// The cluster is the one of the upstream NetworkPolicy e2e tests:
// namespaces x, y and z labelled ns=x..., pods a, b and c in each
// labelled pod=a..., named here by namespace and pod ("xa" is x/a).
package netpoltruth

import (
	"fmt"
	"strings"
)

// Pods are the cluster's pods, in the tables' order (rows and columns).
var Pods = []string{"xa", "xb", "xc", "ya", "yb", "yc", "za", "zb", "zc"}

// Namespaces are the cluster's namespaces, each labelled ns=<name>.
var Namespaces = []string{"x", "y", "z"}

// Namespace is the namespace of pod (short name).
func Namespace(pod string) string { return pod[:1] }

// Name is the name of pod (short name), also its pod label's value.
func Name(pod string) string { return pod[1:] }

// Port is a container port a pod declares.
type Port struct {
	Name     string
	Port     uint16
	Protocol string // "TCP" or "UDP", as in a Pod's spec
}

// DeclaredPorts are the container ports pod declares: serve-80-tcp,
// serve-80-udp, serve-81-tcp, serve-81-udp on every pod, and "web" on x/a
// (TCP 80) and x/b (TCP 8080), to show that a named port resolves per pod.
func DeclaredPorts(pod string) []Port {
	var ports []Port
	for _, p := range []uint16{80, 81} {
		ports = append(ports,
			Port{fmt.Sprintf("serve-%d-tcp", p), p, "TCP"},
			Port{fmt.Sprintf("serve-%d-udp", p), p, "UDP"})
	}
	switch pod {
	case "xa":
		ports = append(ports, Port{"web", 80, "TCP"})
	case "xb":
		ports = append(ports, Port{"web", 8080, "TCP"})
	}
	return ports
}

// ServedPorts are the ports on which every pod must answer, TCP and UDP,
// for every table to be observable with traffic: each port a table
// probes. A declared port is served; others are too, since policies may
// name any port by number.
var ServedPorts = []uint16{80, 81, 82, 5353, 8080}

// Probe is one table: Port and Protocol ("tcp", "udp" or "sctp") probed
// from every pod to every other. Want has one row per source pod, one
// column per destination, in Pods' order: '.' reaches, 'X' does not. A
// pod reaching itself never crosses a node's forward path: always '.'.
type Probe struct {
	Port     uint16
	Protocol string
	Want     string
}

// Key names the probe's port and protocol ("80/tcp").
func (p Probe) Key() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// Table is Want without its surrounding blank lines.
func (p Probe) Table() string { return strings.TrimSpace(p.Want) }

// Label sets the label that names a pod (pod=...) or a namespace (ns=...).
type Label struct {
	Of    string // a pod's short name, or a namespace
	Value string
}

// Change is what changes in the cluster before a step's tables: one of
// its fields is set.
type Change struct {
	What string
	// PodLabel sets a pod's pod label.
	PodLabel *Label
	// NamespaceLabel sets a namespace's ns label.
	NamespaceLabel *Label
	// DeletePolicy deletes one of the case's policies ("ns/name").
	DeletePolicy string
	// UpdatePolicy replaces the spec of one of the case's policies
	// (same namespace and name) with that of this policy.
	UpdatePolicy string
}

// Step is the tables that hold once its change is made (the first step
// of a case changes nothing: its tables hold once the policies are in).
type Step struct {
	Change Change
	Probes []Probe
}

// Case is policies and the tables they make.
type Case struct {
	Name string
	// Policies are NetworkPolicy objects as JSON, in which {ip:xa} stands
	// for pod x/a's address (see PolicyObjects).
	Policies []string
	Steps    []Step
}

// PolicyObjects are the case's policies, each pod address filled in by ip.
func (c Case) PolicyObjects(ip func(pod string) string) []string {
	var r []string
	for _, p := range Pods {
		r = append(r, "{ip:"+p+"}", ip(p))
	}
	rep := strings.NewReplacer(r...)
	out := make([]string, len(c.Policies))
	for i, p := range c.Policies {
		out[i] = rep.Replace(p)
	}
	return out
}

// Policy writes a NetworkPolicy in namespace ns with the given spec JSON.
func Policy(ns, name, spec string) string {
	return fmt.Sprintf(`{"metadata":{"namespace":%q,"name":%q},"spec":%s}`, ns, name, spec)
}

// AllOpen is the table of a port no policy closes.
const AllOpen = `
xa .........
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`

// XClosed is default deny ingress in x: no pod reaches x's pods (each
// still reaches itself); all else is open.
const XClosed = `
xa .XX......
xb X.X......
xc XX.......
ya XXX......
yb XXX......
yc XXX......
za XXX......
zb XXX......
zc XXX......`

// OnlyToAClosed is x/a closed to every other pod, everything else open.
const OnlyToAClosed = `
xa .........
xb X........
xc X........
ya X........
yb X........
yc X........
za X........
zb X........
zc X........`

// XAEgressClosed is x/a reaching no other pod, everything else open.
const XAEgressClosed = `
xa .XXXXXXXX
xb .........
xc .........
ya .........
yb .........
yc .........
za .........
zb .........
zc .........`

// XCClosed is x/c closed to every other pod, everything else open.
const XCClosed = `
xa ..X......
xb ..X......
xc .........
ya ..X......
yb ..X......
yc ..X......
za ..X......
zb ..X......
zc ..X......`

// NoPolicy is the case every other starts from: every pod reaches every
// other.
var NoPolicy = Case{Name: "no policy: every pod is open", Steps: []Step{{Probes: []Probe{{80, "tcp", AllOpen}, {81, "udp", AllOpen}}}}}
