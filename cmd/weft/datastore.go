package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/store"
)

// storeConfig is what every datastore is opened with: the agent's own
// settings, resolved once by runAgent.
type storeConfig struct {
	NodeName    string
	ClusterCIDR netip.Prefix
	SubnetLen   int
	LeaseTTL    time.Duration
	Logger      *slog.Logger
}

// A datastore is one way for the agent to reach its leases and peers.
// Each lives in a file of its own and registers itself, so that the agent
// stays datastore-agnostic. It adds its flags to the agent's flag set and
// returns the function that opens it once the flags are parsed; the flag
// values live in that closure, not in package variables. Opening does not
// contact the datastore (an agent must start while it is down). Besides
// the store, open returns where the store is (etcd's URLs, the API
// server's), for `weft status`.
type datastore func(fs *flag.FlagSet) (open func(storeConfig) (s store.Store, endpoint string, err error))

var datastores = map[string]datastore{}

func registerDatastore(name string, ds datastore) { datastores[name] = ds }

func datastoreNames() string {
	var names []string
	for n := range datastores {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// datastoreFlags adds every datastore's flags to fs and returns a function
// that opens the named one after fs is parsed.
func datastoreFlags(fs *flag.FlagSet) func(name string, c storeConfig) (store.Store, string, error) {
	openers := map[string]func(storeConfig) (store.Store, string, error){}
	for name, ds := range datastores {
		openers[name] = ds(fs)
	}
	return func(name string, c storeConfig) (store.Store, string, error) {
		open, ok := openers[name]
		if !ok {
			return nil, "", fmt.Errorf("unknown datastore %q (have: %s)", name, datastoreNames())
		}
		return open(c)
	}
}
