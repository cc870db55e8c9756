package main

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/lab"
)

func init() {
	registerHidden(lab.KubeCommand, func(args []string) error {
		fs := flag.NewFlagSet(lab.KubeCommand, flag.ContinueOnError)
		dir := fs.String("dir", "", "control plane directory (kept across restarts)")
		addr := fs.String("address", "", "address kube-apiserver listens on")
		cidr := fs.String("cluster-cidr", "", "cluster CIDR the controller-manager allocates podCIDRs from")
		subnetLen := fs.Int("subnet-len", 24, "podCIDR prefix length")
		if err := fs.Parse(args); err != nil {
			return err
		}
		a, err := netip.ParseAddr(*addr)
		if err != nil {
			return fmt.Errorf("--address: %w", err)
		}
		c, err := netip.ParsePrefix(*cidr)
		if err != nil {
			return fmt.Errorf("--cluster-cidr: %w", err)
		}
		return lab.RunKube(*dir, a, c, *subnetLen)
	})
}
