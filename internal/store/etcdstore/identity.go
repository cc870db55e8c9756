package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/weftnet/weft/internal/store"
)

// checkIdentity makes sure, once per node, that the store acts as node
// when etcd's auth is on: etcd takes the client certificate's common name
// as the user, and an agent given another node's certificate (or the
// admin's) would write as that one. With auth off a mismatch is only
// logged: etcd then lets anyone write anything.
func (s *Store) checkIdentity(ctx context.Context, node string) error {
	s.mu.Lock()
	done := s.checked[node]
	s.mu.Unlock()
	if done {
		return nil
	}
	octx, cancel := s.op(ctx)
	resp, err := s.cli.AuthStatus(octx)
	cancel()
	if err != nil {
		return fmt.Errorf("ask etcd whether its auth is on: %w", err)
	}
	switch {
	case !resp.Enabled:
		if s.certCN != "" && s.certCN != node {
			s.log.Warn("the etcd client certificate names another node; etcd's auth is off, so nothing checks which keys this node writes",
				"node", node, "certificate_cn", s.certCN)
		} else if s.certCN == "" {
			s.log.Warn("etcd's auth is off: any client can rewrite any node's record and claims; see `weft etcd-grant`", "node", node)
		}
	case s.certCN == "":
		return fmt.Errorf("etcd has auth on and this agent has no client certificate: give node %s its own (--etcd-cert, common name %q): %w", node, node, store.ErrCredentials)
	case s.certCN != node:
		return fmt.Errorf("the etcd client certificate's common name is %q, not this node's name %q: etcd would let this agent act as %q; give node %s a certificate with CN=%s and its role (`weft etcd-grant --node %s`): %w",
			s.certCN, node, s.certCN, node, node, node, store.ErrCredentials)
	}
	s.mu.Lock()
	s.checked[node] = true
	s.mu.Unlock()
	return nil
}

// denied adds what to do to an error etcd gave because node's role does
// not allow the call.
func denied(err error, node string) error {
	if errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserNotFound) || errors.Is(err, rpctypes.ErrUserEmpty) {
		return fmt.Errorf("%w (etcd lets node %s write only what its role allows: create it with `weft etcd-grant --node %s`)", err, node, node)
	}
	return err
}
