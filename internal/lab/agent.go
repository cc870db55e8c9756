package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// healthAddr is where each agent serves /readyz, on its node's own
// loopback.
var healthAddr = "127.0.0.1:" + strconv.Itoa(names.HealthPort)

// agentArgs is node n's `weft agent` command line.
func (l *Lab) agentArgs(n *NodeState) []string {
	s := l.State
	args := []string{s.WeftBin, "agent", "--node-name", n.Name}
	args = append(args, l.ds.AgentFlags(n)...)
	args = append(args,
		"--cluster-cidr", s.ClusterCIDR.String(),
		"--subnet-len", strconv.Itoa(s.SubnetLen),
		"--lease-ttl", s.LeaseTTL,
		"--backend", string(s.Backend),
		"--underlay-ip", n.UnderlayIP.String(),
		"--data-dir", n.DataDir(),
		"--run-dir", n.RunDir(),
		"--cni-conf-dir", n.CNIConfDir(),
		"--cni-bin-dir", s.BinDir,
		"--health-addr", healthAddr,
	)
	return args
}

// StartAgent starts node's agent (again). It does not wait for it to be
// ready; see WaitAgentReady.
func (l *Lab) StartAgent(node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if process.Alive(n.AgentPID) {
		return fmt.Errorf("agent of %s already runs (pid %d)", node, n.AgentPID)
	}
	for _, d := range []string{n.DataDir(), n.RunDir(), n.CNIConfDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if r, ok := l.ds.(nodeRegistrar); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := r.RegisterNode(ctx, n)
		cancel()
		if err != nil {
			return err
		}
	}
	p, err := process.StartIn(n.Netns, n.AgentLog, l.agentArgs(n))
	if err != nil {
		return fmt.Errorf("agent of %s: %w", node, err)
	}
	l.track(p)
	n.AgentPID = p.Pid()
	return l.save()
}

// StopAgent sends sig to node's agent and waits for it to exit.
func (l *Lab) StopAgent(node string, sig syscall.Signal) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if err := process.SignalWait(n.AgentPID, sig, 10*time.Second); err != nil {
		return fmt.Errorf("stop agent of %s: %w", node, err)
	}
	n.AgentPID = 0
	return l.save()
}

// AgentReady reports whether node's agent answers /readyz with 200.
func (l *Lab) AgentReady(ctx context.Context, node string) (bool, error) {
	n, err := l.Node(node)
	if err != nil {
		return false, err
	}
	code, err := httpGetIn(ctx, n.Netns, "http://"+healthAddr+"/readyz")
	if err != nil {
		return false, err
	}
	return code == 200, nil
}

// WaitAgentReady waits until node's agent is ready and has written the
// conflist and node state, and records the node's subnet. An agent that
// exits meanwhile fails the wait with the end of its log: that is where
// an operator's error (an exhausted cluster CIDR, say) is.
func (l *Lab) WaitAgentReady(ctx context.Context, node string, timeout time.Duration) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if !process.Alive(n.AgentPID) {
			return fmt.Errorf("agent of %s exited: %s", node, process.LogTail(n.AgentLog))
		}
		ok, err := l.AgentReady(ctx, node)
		switch {
		case err != nil:
			last = err
		case !ok:
			last = errors.New("/readyz is not 200")
		default:
			st, err := nodestate.Read(n.DataDir())
			if err == nil {
				_, err = os.Stat(filepath.Join(n.CNIConfDir(), names.ConfListName))
			}
			if err == nil {
				n.Subnet = st.Subnet
				return l.save()
			}
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent of %s not ready after %s: %v; %s", node, timeout, last, process.LogTail(n.AgentLog))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// NodeSubnet reads node's subnet from the state its agent wrote.
func (l *Lab) NodeSubnet(node string) (netip.Prefix, error) {
	n, err := l.Node(node)
	if err != nil {
		return netip.Prefix{}, err
	}
	st, err := nodestate.Read(n.DataDir())
	if err != nil {
		return netip.Prefix{}, err
	}
	return st.Subnet, nil
}

// AgentAlive reports whether node's agent process runs.
func (l *Lab) AgentAlive(node string) (bool, error) {
	n, err := l.Node(node)
	if err != nil {
		return false, err
	}
	if !process.Alive(n.AgentPID) {
		return false, fmt.Errorf("pid %d is gone: %s", n.AgentPID, process.LogTail(n.AgentLog))
	}
	return true, nil
}

// WaitNodeConfigured waits, polling every millisecond, until node's agent
// has written the node state and the conflist: the moment a container
// runtime on the node can attach pods. It does not ask for readiness.
func (l *Lab) WaitNodeConfigured(ctx context.Context, node string, timeout time.Duration) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := nodestate.Read(n.DataDir())
		if err == nil {
			if _, err = os.Stat(filepath.Join(n.CNIConfDir(), names.ConfListName)); err == nil {
				n.Subnet = st.Subnet
				return nil
			}
		}
		if !process.Alive(n.AgentPID) {
			return fmt.Errorf("agent of %s exited: %s", node, process.LogTail(n.AgentLog))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent of %s wrote no CNI configuration within %s: %v", node, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
