package lab

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/weftnet/weft/internal/netns"
)

// RebootNode does to node what a reboot does to a machine: its agent dies
// without cleaning up (SIGKILL), its network namespace goes with
// everything Weft made in it (bridge, veths, routes, the VXLAN device,
// nftables), the pods' namespaces go, and its run directory (a tmpfs)
// is emptied; its data directory, CNI configuration and the runtime's CNI
// cache stay, as a disk does. The node comes back as a fresh namespace
// wired to its segment, with no agent: the caller starts it. The dead
// pods stay recorded, as a runtime remembers its sandboxes; DelPod is the
// runtime's CNI DEL for each once the node is back.
func (l *Lab) RebootNode(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if err := l.StopAgent(name, syscall.SIGKILL); err != nil {
		return err
	}
	var errs []error
	for _, p := range n.Pods {
		errs = append(errs, netns.Delete(p.Netns))
	}
	errs = append(errs, l.unwire(n.Name), netns.Delete(n.Netns), os.RemoveAll(n.RunDir()))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reboot node %s: %w", name, err)
	}
	if err := l.buildNode(n); err != nil {
		return fmt.Errorf("reboot node %s: %w", name, err)
	}
	return l.save()
}
