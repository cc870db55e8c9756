package main

import (
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/uninstall"
)

func init() {
	register("uninstall", "remove every trace of Weft from this node (interfaces, routes, rules, files)", runUninstall)
}

func runUninstall(args []string) error {
	d := uninstall.Defaults()
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.StringVar(&d.ConfDir, "cni-conf-dir", d.ConfDir, "CNI config directory")
	fs.StringVar(&d.BinDir, "cni-bin-dir", d.BinDir, "CNI plugin directory")
	fs.StringVar(&d.DataDir, "data-dir", d.DataDir, "Weft's data directory")
	fs.StringVar(&d.RunDir, "run-dir", d.RunDir, "Weft's run directory")
	force := fs.Bool("force", false, "uninstall even though the agent still answers on this node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// A running agent would put everything back at its next reconcile.
	if c, err := net.DialTimeout("unix", agentapi.SocketPath(d.RunDir), time.Second); err == nil {
		c.Close()
		if !*force {
			return fmt.Errorf("the Weft agent is still running on this node and would recreate what uninstall removes: stop it first (kubectl -n kube-system delete daemonset weft), or pass --force")
		}
	}
	removed, err := uninstall.Run(d)
	for _, r := range removed {
		fmt.Println("removed", r)
	}
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		fmt.Println("nothing of Weft's is left on this node")
	}
	return nil
}
