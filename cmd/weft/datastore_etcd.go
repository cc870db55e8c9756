package main

import (
	"flag"
	"strings"

	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

func init() {
	registerDatastore("etcd", func(fs *flag.FlagSet) func(storeConfig) (store.Store, string, error) {
		endpoints := fs.String("etcd-endpoints", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
		ca := fs.String("etcd-ca", "", "CA certificate file to verify etcd's server certificate")
		cert := fs.String("etcd-cert", "", "client certificate file for etcd (with --etcd-key)")
		key := fs.String("etcd-key", "", "client key file for etcd (with --etcd-cert)")
		prefix := fs.String("etcd-prefix", etcdstore.DefaultPrefix, "key prefix of Weft's data in etcd")
		return func(c storeConfig) (store.Store, string, error) {
			var eps []string
			for _, e := range strings.Split(*endpoints, ",") {
				if e = strings.TrimSpace(e); e != "" {
					eps = append(eps, e)
				}
			}
			s, err := etcdstore.Open(etcdstore.Config{
				Endpoints:   eps,
				CAFile:      *ca,
				CertFile:    *cert,
				KeyFile:     *key,
				Prefix:      *prefix,
				ClusterCIDR: c.ClusterCIDR,
				SubnetLen:   c.SubnetLen,
				TTL:         c.LeaseTTL,
				Logger:      c.Logger,
			})
			if err != nil {
				return nil, "", err
			}
			return s, strings.Join(eps, ","), nil
		}
	})
}
