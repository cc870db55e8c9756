package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/weftnet/weft/internal/store"
)

// datastore is one way for the agent to reach its datastore. Each lives in
// a file of its own and registers itself; the agent stays datastore-
// agnostic. open may read agentOpts (node name, cluster CIDR, subnet
// length, lease TTL), which are parsed before it is called; besides the
// store it returns where the store is (etcd's URLs, the API server's), for
// `weft status`.
type datastore struct {
	addFlags func(*flag.FlagSet)
	open     func(ctx context.Context) (s store.Store, endpoint string, err error)
}

var datastores = map[string]datastore{}

func registerDatastore(name string, addFlags func(*flag.FlagSet), open func(ctx context.Context) (store.Store, string, error)) {
	datastores[name] = datastore{addFlags: addFlags, open: open}
}

func datastoreNames() string {
	var names []string
	for n := range datastores {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// openDatastore opens the named datastore.
func openDatastore(ctx context.Context, name string) (store.Store, string, error) {
	ds, ok := datastores[name]
	if !ok {
		return nil, "", fmt.Errorf("unknown datastore %q (have: %s)", name, datastoreNames())
	}
	return ds.open(ctx)
}
