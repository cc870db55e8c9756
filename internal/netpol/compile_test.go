package netpol

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/testkit/netpoltruth"
)

// The cluster of the upstream netpol e2e tests (see netpoltruth), all on
// this node, each pod declaring netpoltruth's ports.
var order = netpoltruth.Pods

func podIP(short string) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 244, 1, byte(10*(short[0]-'x'+1) + short[1] - 'a' + 1)})
}

var protocols = map[string]uint8{"TCP": TCP, "UDP": UDP, "SCTP": SCTP}

func cluster(policies ...string) Input {
	in := Input{Node: "n1", NodeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	for _, ns := range netpoltruth.Namespaces {
		in.Namespaces = append(in.Namespaces, Namespace{Name: ns, Labels: map[string]string{"ns": ns}})
	}
	for _, s := range order {
		p := Pod{Namespace: netpoltruth.Namespace(s), Name: netpoltruth.Name(s), Node: "n1", IP: podIP(s),
			Labels: map[string]string{"pod": netpoltruth.Name(s)}}
		for _, port := range netpoltruth.DeclaredPorts(s) {
			p.Ports = append(p.Ports, NamedPort{port.Name, protocols[port.Protocol], port.Port})
		}
		in.Pods = append(in.Pods, p)
	}
	for _, js := range policies {
		in.Policies = append(in.Policies, decode(js))
	}
	return in
}

func decode(js string) Policy {
	var obj map[string]any
	if err := json.Unmarshal([]byte(js), &obj); err != nil {
		panic(fmt.Sprintf("policy %s: %v", js, err))
	}
	p, err := DecodePolicy(obj)
	if err != nil {
		panic(err)
	}
	return p
}

// policy writes a NetworkPolicy in namespace ns with the given spec JSON.
var policy = netpoltruth.Policy

// change makes c in the cluster in, as the API server would show it.
func change(in *Input, c netpoltruth.Change) {
	switch {
	case c.PodLabel != nil:
		i := slices.IndexFunc(in.Pods, func(p Pod) bool {
			return p.Namespace == netpoltruth.Namespace(c.PodLabel.Of) && p.Name == netpoltruth.Name(c.PodLabel.Of)
		})
		in.Pods[i].Labels = map[string]string{"pod": c.PodLabel.Value}
	case c.NamespaceLabel != nil:
		i := slices.IndexFunc(in.Namespaces, func(ns Namespace) bool { return ns.Name == c.NamespaceLabel.Of })
		in.Namespaces[i].Labels = map[string]string{"ns": c.NamespaceLabel.Value}
	case c.DeletePolicy != "":
		in.Policies = slices.DeleteFunc(in.Policies, func(p Policy) bool { return p.Namespace+"/"+p.Name == c.DeletePolicy })
	case c.UpdatePolicy != "":
		np := decode(c.UpdatePolicy)
		i := slices.IndexFunc(in.Policies, func(p Policy) bool { return p.Namespace == np.Namespace && p.Name == np.Name })
		in.Policies[i] = np
	}
}

// TestTruthTables compiles every case of the truth tables (the ones the
// kubelet end-to-end test checks with traffic) and checks each table
// against the verdicts, step after step.
func TestTruthTables(t *testing.T) {
	ip := func(s string) string { return podIP(s).String() }
	for _, tc := range netpoltruth.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			in := cluster(tc.PolicyObjects(ip)...)
			for i, step := range tc.Steps {
				change(&in, step.Change)
				st := Compile(in)
				for _, pr := range step.Probes {
					got := matrix(st, protocols[strings.ToUpper(pr.Protocol)], pr.Port)
					if want := pr.Table(); got != want {
						t.Errorf("step %d (%s), %s:\ngot\n%s\nwant\n%s", i+1, step.Change.What, pr.Key(), got, want)
					}
				}
			}
		})
	}
}

func matrix(st *State, proto uint8, port uint16) string {
	var rows []string
	for _, src := range order {
		row := src + " "
		for _, dst := range order {
			if src == dst || allowed(st, podIP(src), podIP(dst), proto, port) {
				row += "."
			} else {
				row += "X"
			}
		}
		rows = append(rows, row)
	}
	return strings.Join(rows, "\n")
}
