package lab

import (
	"strings"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/kernelstate"
)

// KernelState is a node's network state (see package kernelstate for
// what it holds and what it leaves out on purpose).
type KernelState = kernelstate.State

// Kernel snapshots the network state of a node (or any lab namespace).
func (l *Lab) Kernel(nsName string) (KernelState, error) {
	return kernelstate.Take(netns.Path(nsName))
}

// PathTo says how node from reaches node to's pod subnet, from from's
// routing table: "vxlan", "direct" (via to's underlay address) or "none".
func (l *Lab) PathTo(from, to string) (string, error) {
	a, err := l.Node(from)
	if err != nil {
		return "", err
	}
	b, err := l.Node(to)
	if err != nil {
		return "", err
	}
	k, err := l.Kernel(a.Netns)
	if err != nil {
		return "", err
	}
	for _, line := range k.Lines {
		if !strings.HasPrefix(line, "route dst="+b.Subnet.String()+" ") {
			continue
		}
		switch {
		case strings.Contains(line, " dev=weft.vxlan "):
			return "vxlan", nil
		case strings.Contains(line, " gw="+b.UnderlayIP.String()+" "):
			return "direct", nil
		}
	}
	return "none", nil
}
