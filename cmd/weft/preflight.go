package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/preflight"
)

func init() {
	register("preflight", "check this node before Weft runs on it (ports, kernel, sysctls, CNI, MTU)", runPreflight)
}

func runPreflight(args []string) error {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	role := fs.String("role", "", "the node's role: control-plane or worker (required)")
	out := fs.String("o", "text", "output: text or json")
	confDir := fs.String("cni-conf-dir", names.CNIConfDir, "the container runtime's CNI config directory")
	cidr := fs.String("cluster-cidr", "", "the cluster's pod CIDR, checked against the node's routes (e.g. 10.244.0.0/16)")
	underlay := fs.String("underlay", "", "the interface other nodes are reached through (default: the default route's)")
	vxlanPort := fs.Uint("vxlan-port", names.VXLANPort, "Weft's VXLAN UDP port")
	healthPort := fs.Uint("health-port", names.HealthPort, "Weft's health port")
	metricsPort := fs.Uint("metrics-port", names.MetricsPort, "Weft's metrics port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role == "" {
		return fmt.Errorf("--role is required: %s or %s", preflight.ControlPlane, preflight.Worker)
	}
	r, err := preflight.ParseRole(*role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	if *out != "text" && *out != "json" {
		return fmt.Errorf("-o %q: want text or json", *out)
	}
	o := preflight.Defaults(r)
	o.ConfDir, o.Underlay = *confDir, *underlay
	for _, p := range []*uint{vxlanPort, healthPort, metricsPort} {
		if *p == 0 || *p > 65535 {
			return fmt.Errorf("port %d: ports are 1-65535", *p)
		}
	}
	o.VXLANPort, o.HealthPort, o.MetricsPort = uint16(*vxlanPort), uint16(*healthPort), uint16(*metricsPort)
	if *cidr != "" {
		p, err := netip.ParsePrefix(*cidr)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("--cluster-cidr %q: want an IPv4 CIDR such as 10.244.0.0/16", *cidr)
		}
		o.ClusterCIDR = p.Masked()
	}
	rep, err := preflight.Run(o)
	if err != nil {
		return err
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printPreflight(os.Stdout, rep)
	}
	if rep.Failed() {
		return fmt.Errorf("%d check(s) failed", rep.Count(preflight.Fail))
	}
	return nil
}

func printPreflight(w io.Writer, rep preflight.Report) {
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "[%s] %s: %s\n", c.Result, c.Name, c.Detail)
		if c.Fix != "" && c.Result != preflight.Pass {
			fmt.Fprintf(w, "       fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(w, "\n%s node: %d passed, %d warnings, %d failed\n", rep.Role,
		rep.Count(preflight.Pass), rep.Count(preflight.Warn), rep.Count(preflight.Fail))
}
