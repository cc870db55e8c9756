package main

import (
	"context"
	"flag"
	"strings"

	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

var etcdFlags struct {
	endpoints, ca, cert, key, prefix string
}

func init() {
	registerDatastore("etcd", func(fs *flag.FlagSet) {
		fs.StringVar(&etcdFlags.endpoints, "etcd-endpoints", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
		fs.StringVar(&etcdFlags.ca, "etcd-ca", "", "CA certificate file to verify etcd's server certificate")
		fs.StringVar(&etcdFlags.cert, "etcd-cert", "", "client certificate file for etcd (with --etcd-key)")
		fs.StringVar(&etcdFlags.key, "etcd-key", "", "client key file for etcd (with --etcd-cert)")
		fs.StringVar(&etcdFlags.prefix, "etcd-prefix", "/weft/", "key prefix of Weft's data in etcd")
	}, func(ctx context.Context) (store.Store, string, error) {
		var eps []string
		for _, e := range strings.Split(etcdFlags.endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		s, err := etcdstore.Open(etcdstore.Options{
			Endpoints:   eps,
			CAFile:      etcdFlags.ca,
			CertFile:    etcdFlags.cert,
			KeyFile:     etcdFlags.key,
			Prefix:      etcdFlags.prefix,
			ClusterCIDR: agentOpts.clusterCIDR,
			SubnetLen:   agentOpts.subnetLen,
			TTL:         agentOpts.leaseTTL,
			Logger:      agentOpts.logger,
		})
		return s, strings.Join(eps, ","), err
	})
}
