package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RootUser is etcd's administrator. With client-certificate auth, a
// certificate whose common name is "root" acts as root: keep it off the
// nodes.
const RootUser = "root"

// RoleName is the etcd role GrantNode gives node's user.
func RoleName(node string) string { return "weft-node-" + node }

// perm is one permission of a node's role.
type perm struct {
	key, end string
	typ      clientv3.PermissionType
}

// nodePerms is everything node may do under prefix: read all of Weft's
// keys (its peers' records and every claim), and write its own record,
// claims and alive key, each an exact key. Nothing else: not another
// node's keys, not the legacy subnets/ keys.
func nodePerms(prefix, node string) []perm {
	rw := clientv3.PermissionType(clientv3.PermReadWrite)
	return []perm{
		{prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermRead)},
		{NodeKey(prefix, node), "", rw},
		{SubnetClaimKey(prefix, node), "", rw},
		{AddressClaimKey(prefix, node), "", rw},
		{AliveKey(prefix, node), "", rw},
	}
}

// GrantNode gives node an etcd user of its name (no password: with
// --client-cert-auth etcd takes the user from the client certificate's
// common name) and a role with exactly nodePerms under prefix, through
// cli, which must act as root. It may be run again: it adds what is
// missing and revokes permissions the role should not have (left from
// another prefix, say).
func GrantNode(ctx context.Context, cli *clientv3.Client, prefix, node string) error {
	if err := validNodeName(node); err != nil {
		return err
	}
	if node == RootUser {
		return fmt.Errorf("node name %q is etcd's administrator: a node of that name would act as root", node)
	}
	prefix = normPrefix(prefix)
	role := RoleName(node)
	if _, err := cli.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("create etcd role %s: %w", role, err)
	}
	want := nodePerms(prefix, node)
	got, err := cli.RoleGet(ctx, role)
	if err != nil {
		return fmt.Errorf("read etcd role %s: %w", role, err)
	}
	for _, p := range got.Perm {
		if !wanted(want, p) {
			if _, err := cli.RoleRevokePermission(ctx, role, string(p.Key), string(p.RangeEnd)); err != nil {
				return fmt.Errorf("revoke %q from etcd role %s: %w", p.Key, role, err)
			}
		}
	}
	for _, p := range want {
		if !granted(got.Perm, p) {
			if _, err := cli.RoleGrantPermission(ctx, role, p.key, p.end, p.typ); err != nil {
				return fmt.Errorf("grant %q to etcd role %s: %w", p.key, role, err)
			}
		}
	}
	_, err = cli.UserAddWithOptions(ctx, node, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("create etcd user %s: %w", node, err)
	}
	if _, err := cli.UserGrantRole(ctx, node, role); err != nil {
		return fmt.Errorf("give etcd user %s the role %s: %w", node, role, err)
	}
	return nil
}

func same(p *authpb.Permission, q perm) bool {
	return string(p.Key) == q.key && bytes.Equal(p.RangeEnd, []byte(q.end)) && clientv3.PermissionType(p.PermType) == q.typ
}

func wanted(want []perm, p *authpb.Permission) bool {
	for _, q := range want {
		if same(p, q) {
			return true
		}
	}
	return false
}

func granted(have []*authpb.Permission, q perm) bool {
	for _, p := range have {
		if same(p, q) {
			return true
		}
	}
	return false
}

// RevokeNode takes node out through cli (acting as root): its etcd user
// and role go, so that its certificate writes nothing any more, and so do
// its keys under prefix, so that its peers stop routing to it. For a node
// whose credentials were stolen, or that left without `weft agent
// --cleanup`.
func RevokeNode(ctx context.Context, cli *clientv3.Client, prefix, node string) error {
	if err := validNodeName(node); err != nil {
		return err
	}
	prefix = normPrefix(prefix)
	if _, err := cli.UserDelete(ctx, node); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete etcd user %s: %w", node, err)
	}
	if _, err := cli.RoleDelete(ctx, RoleName(node)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("delete etcd role %s: %w", RoleName(node), err)
	}
	alive, err := cli.Get(ctx, AliveKey(prefix, node))
	if err != nil {
		return fmt.Errorf("read the alive key of %s: %w", node, err)
	}
	if _, err := cli.Txn(ctx).Then(RemoveOps(prefix, node)...).Commit(); err != nil {
		return fmt.Errorf("delete the keys of %s: %w", node, err)
	}
	for _, kv := range alive.Kvs {
		if kv.Lease != 0 {
			cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)) // best effort: it holds nothing now
		}
	}
	return nil
}

// EnableAuth turns etcd's auth on through cli, making the root user
// (without a password: a client certificate with CN=root acts as it)
// first, as etcd requires. It does nothing when auth is on already.
func EnableAuth(ctx context.Context, cli *clientv3.Client) error {
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("read etcd's auth status: %w", err)
	}
	if st.Enabled {
		return nil
	}
	_, err = cli.UserAddWithOptions(ctx, RootUser, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("create etcd user %s: %w", RootUser, err)
	}
	if _, err := cli.UserGrantRole(ctx, RootUser, RootUser); err != nil {
		return fmt.Errorf("give etcd user %s the role %s: %w", RootUser, RootUser, err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable etcd's auth: %w", err)
	}
	return nil
}
