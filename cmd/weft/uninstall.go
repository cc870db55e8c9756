package main

import (
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/uninstall"
)

func init() {
	register("uninstall", "remove every trace of Weft from this node (interfaces, routes, rules, files)", runUninstall)
}

func runUninstall(args []string) error {
	d := names.DefaultDirs()
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.StringVar(&d.CNIConf, "cni-conf-dir", d.CNIConf, "CNI config directory")
	fs.StringVar(&d.CNIBin, "cni-bin-dir", d.CNIBin, "CNI plugin directory")
	fs.StringVar(&d.Data, "data-dir", d.Data, "Weft's data directory (removed with everything in it: it must be Weft's, named weft or holding Weft's files)")
	fs.StringVar(&d.Run, "run-dir", d.Run, "Weft's run directory (removed with everything in it, under the same rule)")
	force := fs.Bool("force", false, "uninstall even though the agent still answers on this node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// A running agent would put everything back at its next reconcile.
	if c, err := net.DialTimeout("unix", agentapi.SocketPath(d.Run), time.Second); err == nil {
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
