// Package ops_test runs Weft's operator commands (peers, doctor,
// preflight, uninstall) against a lab, each with the failure it exists to
// find made on purpose: a peer cut off, an MTU black hole on the underlay,
// a leaked address, a port taken and a port filtered, and a node
// uninstalled. The lab has a unique name and is removed, pass or fail.
package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

// up builds a lab of nodes nodes with one pod each, on one underlay
// segment, and removes it when the test ends, checking that nothing of it
// is left.
func up(t *testing.T, backend cluster.Backend, nodes int) *lab.Lab {
	t.Helper()
	cfg := labtest.Config(t, "wtd")
	cfg.Backend, cfg.Nodes, cfg.PodsPerNode = backend, nodes, 1
	cfg.ReadyTimeout = 45 * time.Second
	return labtest.Up(t, cfg)
}

// weftOn runs `weft ARGS` on a lab node the way an operator does, through
// `weft lab exec`, and returns its standard output and whether it exited
// non-zero (with its standard error).
func weftOn(t *testing.T, l *lab.Lab, node string, args ...string) (string, error) {
	t.Helper()
	bin, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"lab", "exec", "--name", l.Name, node, "--", bin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("weft %s on %s: %v", strings.Join(args, " "), node, err)
		}
		err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}

// nodeDirs are the flags that point a command at a lab node's files.
func nodeDirs(t *testing.T, l *lab.Lab, node string) []string {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--data-dir", n.DataDir(), "--cni-conf-dir", n.CNIConfDir(), "--cni-bin-dir", l.BinDir}
}

// runDoctor runs `weft doctor -o json` on node; ok is its exit status.
func runDoctor(t *testing.T, l *lab.Lab, node string, extra ...string) (rep doctor.Report, ok bool) {
	t.Helper()
	return runDoctorArgs(t, l, node, append(nodeDirs(t, l, node), extra...)...)
}

// runDoctorArgs runs `weft doctor -o json` on node with only the flags
// given: without directory flags doctor must find the agent's own.
func runDoctorArgs(t *testing.T, l *lab.Lab, node string, extra ...string) (rep doctor.Report, ok bool) {
	t.Helper()
	args := []string{"doctor", "-o", "json", "--timeout", "500ms", "--tries", "2"}
	out, err := weftOn(t, l, node, append(args, extra...)...)
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("weft doctor on %s: %v (%v)\n%s", node, jerr, err, out)
	}
	if err == nil && rep.Failed() || err != nil && !rep.Failed() {
		t.Errorf("doctor's exit (%v) disagrees with its findings: %+v", err, rep.Findings)
	}
	return rep, err == nil
}

// finding returns the one finding of check (for peer, if given).
func finding(t *testing.T, rep doctor.Report, check, peer string) doctor.Finding {
	t.Helper()
	var found []doctor.Finding
	for _, f := range rep.Findings {
		if f.Check == check && f.Peer == peer {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %q finding for peer %q, got %d in %s", check, peer, len(found), show(rep))
	}
	return found[0]
}

func show(rep doctor.Report) string {
	var b strings.Builder
	for _, f := range rep.Findings {
		fmt.Fprintf(&b, "\n  [%s] %s %s: %s", f.Result, f.Check, f.Peer, f.Detail)
	}
	return b.String()
}

// notOK lists the findings that are not OK.
func notOK(rep doctor.Report) []doctor.Finding {
	var out []doctor.Finding
	for _, f := range rep.Findings {
		if f.Result != doctor.OK {
			out = append(out, f)
		}
	}
	return out
}

// inNS runs fn in a lab namespace.
func inNS(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(netns.Path(name), func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatal(err)
	}
}

// setLink changes a link of a lab namespace.
func setLink(t *testing.T, nsName, link string, change func(netlink.Link) error) {
	t.Helper()
	inNS(t, nsName, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		return change(l)
	})
}

// waitReachable waits until node's agent has reached each of peers with
// its own probes: the agents answer probes a moment after they are ready.
func waitReachable(t *testing.T, l *lab.Lab, node string, peers ...string) {
	t.Helper()
	for _, peer := range peers {
		testnet.Eventually(t, 15*time.Second, node+"'s agent reaching "+peer, func() error {
			p, err := peerState(t, l, node, peer)
			if err == nil && p.State != agentapi.Reachable {
				err = fmt.Errorf("%s is %s (%s)", peer, p.State, p.LastError)
			}
			return err
		})
	}
}

// peerState is how node's agent sees peer, from `weft peers -o json`.
func peerState(t *testing.T, l *lab.Lab, node, peer string) (agentapi.Peer, error) {
	out, err := weftOn(t, l, node, "peers", "-o", "json")
	if err != nil {
		return agentapi.Peer{}, err
	}
	var ps []agentapi.Peer
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return agentapi.Peer{}, err
	}
	for _, p := range ps {
		if p.Name == peer {
			return p, nil
		}
	}
	return agentapi.Peer{}, fmt.Errorf("no peer %s in %s", peer, out)
}
