package main

import (
	"flag"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/podsync"
)

func init() {
	registerHidden(lab.PodSyncCommand, func(args []string) error {
		fs := flag.NewFlagSet(lab.PodSyncCommand, flag.ContinueOnError)
		var o podsync.Options
		fs.StringVar(&o.Lab, "lab", "", "the lab's name")
		fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "the lab's admin kubeconfig")
		fs.StringVar(&o.Netcheck, "netcheck", "", "the echo server run for the pods' containerPorts")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return podsync.Run(o)
	})
}
