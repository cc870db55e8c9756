package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/weftnet/weft/internal/store/etcdstore"
)

func init() {
	register("etcd-grant", "give a node its etcd user and role (or take them away: --revoke), with etcd's root certificate", runEtcdGrant)
}

// runEtcdGrant is the operator's side of etcd's auth: each node's agent
// acts as the etcd user named by its certificate's common name, and this
// makes that user and a role that may write the node's own keys only.
func runEtcdGrant(args []string) error {
	fs := flag.NewFlagSet("etcd-grant", flag.ContinueOnError)
	node := fs.String("node", "", "the node's name: its etcd user, and its certificate's common name")
	revoke := fs.Bool("revoke", false, "delete the node's user and role, and its record and claims (a node that left, or whose credentials were stolen)")
	enable := fs.Bool("enable-auth", false, "also create etcd's root user (no password: a certificate with CN=root acts as it) and turn etcd's auth on, if it is off")
	f := addEtcdFlags(fs, "etcd's root client certificate file (common name root), with --etcd-key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *node == "" && !*enable {
		return fmt.Errorf("--node is required (or --enable-auth alone)")
	}
	c := f.client()
	c.DialTimeout = 5 * time.Second
	cli, err := etcdstore.NewClient(c)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := interruptible()
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	if *node != "" {
		if *revoke {
			if err := etcdstore.RevokeNode(ctx, cli, *f.prefix, *node); err != nil {
				return err
			}
			fmt.Printf("node %s: etcd user and role %s deleted, its keys under %s removed\n", *node, etcdstore.RoleName(*node), *f.prefix)
		} else {
			if err := etcdstore.GrantNode(ctx, cli, *f.prefix, *node); err != nil {
				return err
			}
			fmt.Printf("node %s: etcd user %s with role %s: read %s, write its own record, claims and alive key\n", *node, *node, etcdstore.RoleName(*node), *f.prefix)
		}
	}
	if *enable {
		if err := etcdstore.EnableAuth(ctx, cli); err != nil {
			return err
		}
		fmt.Println("etcd's auth is on")
	}
	return nil
}
