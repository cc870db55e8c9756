package main

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// The operator's path, on an etcd with client certificates required:
// `weft etcd-grant --enable-auth` turns auth on with root's certificate,
// `--node` lets the node's certificate write its own keys and no other
// node's, `--revoke` takes that away again with the node's keys.
func TestEtcdGrantGivesANodeItsOwnKeysOnly(t *testing.T) {
	srv := etcdtest.StartSecure(t) // auth on already: --enable-auth must leave it so
	n1, err := srv.PKI.Client("n1")
	if err != nil {
		t.Fatal(err)
	}
	root := []string{"--etcd-endpoints", srv.Endpoint, "--etcd-ca", srv.Root.CA, "--etcd-cert", srv.Root.Cert, "--etcd-key", srv.Root.Key, "--etcd-prefix", "/wtg/"}
	if err := runEtcdGrant(append([]string{"--enable-auth", "--node", "n1"}, root...)); err != nil {
		t.Fatalf("weft etcd-grant --node n1: %v", err)
	}
	cli := srv.Client(t, n1)
	ctx := context.Background()
	if _, err := cli.Put(ctx, etcdstore.NodeKey("/wtg/", "n1"), "{}"); err != nil {
		t.Errorf("n1 writes its record: %v", err)
	}
	if _, err := cli.Put(ctx, etcdstore.NodeKey("/wtg/", "n2"), "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("n1 writes n2's record: %v, want permission denied", err)
	}
	if _, err := cli.Put(ctx, etcdstore.NodeKey("/weft/", "n1"), "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("n1 writes under another prefix: %v, want permission denied", err)
	}
	if err := runEtcdGrant(append([]string{"--node", "n1", "--revoke"}, root...)); err != nil {
		t.Fatalf("weft etcd-grant --revoke: %v", err)
	}
	if _, err := cli.Put(ctx, etcdstore.NodeKey("/wtg/", "n1"), "{}"); err == nil {
		t.Error("n1 still writes its record after --revoke")
	}
	resp, err := srv.Client(t, srv.Root).Get(ctx, etcdstore.NodeKey("/wtg/", "n1"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("n1's record after --revoke: %v, %d keys", err, len(resp.Kvs))
	}
	if err := runEtcdGrant(append([]string{"--node", "root"}, root...)); err == nil {
		t.Error("etcd-grant made a node named root")
	}
}
