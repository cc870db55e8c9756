package etcdtest

import (
	"context"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdpki"
)

// Secure is an etcd as Weft expects production to run it: clients over
// TLS only, each with a certificate from the PKI's CA, and auth on, so
// that a certificate's common name is the etcd user it acts as. Root is
// the administrator's certificate.
type Secure struct {
	*Server
	PKI  *etcdpki.CA
	Root etcdpki.Files
}

// StartSecure runs a fresh secure etcd and stops it when the test ends.
func StartSecure(t testing.TB) *Secure {
	t.Helper()
	pki, err := etcdpki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.Server(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.Client(etcdstore.RootUser)
	if err != nil {
		t.Fatal(err)
	}
	s := &Secure{Server: StartTLS(t, pki.CAFile(), srv.Cert, srv.Key), PKI: pki, Root: root}
	cli := s.Client(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := etcdstore.EnableAuth(ctx, cli); err != nil {
		t.Fatal(err)
	}
	return s
}

// Node issues node's client certificate and gives node its role under
// prefix, as `weft etcd-grant` does.
func (s *Secure) Node(t testing.TB, prefix, node string) etcdpki.Files {
	t.Helper()
	f, err := s.PKI.Client(node)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := etcdstore.GrantNode(ctx, s.Client(t, s.Root), prefix, node); err != nil {
		t.Fatal(err)
	}
	return f
}

// Client returns a client acting with the certificate f, closed when the
// test ends.
func (s *Secure) Client(t testing.TB, f etcdpki.Files) *clientv3.Client {
	t.Helper()
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: []string{s.Endpoint}, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
