package policyctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ensureBridgeNF makes bridged traffic (pods of this node talking to each
// other across the node bridge) pass the IPv4 forward hook, where the
// policy table judges it: without br_netfilter's call-iptables, same-node
// traffic would bypass every policy. Kubernetes nodes run with it on; a
// node where it is off is told, and put right when the sysctl can be
// written.
func (c *Controller) ensureBridgeNF() error {
	dir := c.cfg.ProcSysNet
	if dir == "" {
		dir = "/proc/sys/net"
	}
	path := filepath.Join(dir, "bridge", "bridge-nf-call-iptables")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("br_netfilter is not loaded (%w): traffic between pods of this node is not policed", err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("set %s to 1: %w: traffic between pods of this node is not policed", path, err)
	}
	c.cfg.Logger.Info("policy: turned on br_netfilter's call-iptables, so that traffic between this node's pods is policed", "sysctl", path)
	return nil
}
