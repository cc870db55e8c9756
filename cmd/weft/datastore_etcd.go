package main

import (
	"flag"
	"strings"

	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

// etcdFlags are how every command reaches etcd: the agent with its node's
// certificate, `weft etcd-grant` with the administrator's.
type etcdFlags struct {
	endpoints, ca, cert, key, prefix *string
}

func addEtcdFlags(fs *flag.FlagSet, certHelp string) etcdFlags {
	return etcdFlags{
		endpoints: fs.String("etcd-endpoints", "http://127.0.0.1:2379", "etcd client URLs, comma-separated"),
		ca:        fs.String("etcd-ca", "", "CA certificate file to verify etcd's server certificate"),
		cert:      fs.String("etcd-cert", "", certHelp),
		key:       fs.String("etcd-key", "", "client key file for etcd (with --etcd-cert)"),
		prefix:    fs.String("etcd-prefix", etcdstore.DefaultPrefix, "key prefix of Weft's data in etcd"),
	}
}

func (f etcdFlags) endpointList() []string {
	var eps []string
	for _, e := range strings.Split(*f.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

func (f etcdFlags) client() etcdstore.ClientConfig {
	return etcdstore.ClientConfig{Endpoints: f.endpointList(), CAFile: *f.ca, CertFile: *f.cert, KeyFile: *f.key}
}

func init() {
	registerDatastore("etcd", func(fs *flag.FlagSet) func(storeConfig) (store.Store, string, error) {
		f := addEtcdFlags(fs, "this node's client certificate file for etcd (with --etcd-key); with etcd's auth on, its common name must be the node's name")
		return func(c storeConfig) (store.Store, string, error) {
			eps := f.endpointList()
			s, err := etcdstore.Open(etcdstore.Config{
				Endpoints:   eps,
				CAFile:      *f.ca,
				CertFile:    *f.cert,
				KeyFile:     *f.key,
				Prefix:      *f.prefix,
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
