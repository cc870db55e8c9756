// Package etcdpki makes the certificates of an etcd run as Weft expects
// it in production, for the lab and the tests: a CA, a server certificate,
// one client certificate per node whose common name is the node's name
// (etcd's user for it under client-certificate auth), and one for root,
// the administrator. It is a directory of PEM files and nothing else: no
// etcd, no network.
package etcdpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// validity of every certificate: labs and tests live for hours.
const validity = 30 * 24 * time.Hour

// CA is a certificate authority kept in a directory: ca.pem, ca-key.pem,
// and the certificates it issued.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
}

// Files are the paths of one certificate, its key, and the CA that
// verifies its peer.
type Files struct {
	CA, Cert, Key string
}

// Open loads the CA in dir, or makes one there when dir holds none.
func Open(dir string) (*CA, error) {
	ca, err := load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return create(dir)
	}
	return ca, err
}

func create(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd PKI directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "weft etcd CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create the etcd CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{dir: dir, cert: cert, key: key}
	// The key first: a directory with ca.pem is taken to hold a whole CA.
	if err := writeKey(ca.path("ca-key.pem"), key); err != nil {
		return nil, err
	}
	return ca, writePEM(ca.path("ca.pem"), "CERTIFICATE", der)
}

func load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("etcd CA in %s: %w", dir, err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("etcd CA in %s: not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("etcd CA in %s: %w", dir, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("etcd CA key in %s: %w", dir, err)
	}
	return &CA{dir: dir, cert: cert, key: key}, nil
}

func (ca *CA) path(name string) string { return filepath.Join(ca.dir, name) }

// CAFile is the CA certificate's path.
func (ca *CA) CAFile() string { return ca.path("ca.pem") }

// Server issues (once) the serving certificate "server" for ips.
func (ca *CA) Server(ips ...net.IP) (Files, error) {
	return ca.issue("server", "weft etcd server", x509.ExtKeyUsageServerAuth, ips)
}

// Client issues (once) a client certificate whose common name is cn: a
// node's name, or root.
func (ca *CA) Client(cn string) (Files, error) {
	return ca.issue(cn, cn, x509.ExtKeyUsageClientAuth, nil)
}

// Remove deletes the certificate and key issued as name.
func (ca *CA) Remove(name string) error {
	f := ca.files(name)
	return errors.Join(rmIfThere(f.Cert), rmIfThere(f.Key))
}

func rmIfThere(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (ca *CA) files(name string) Files {
	return Files{CA: ca.CAFile(), Cert: ca.path(name + ".pem"), Key: ca.path(name + "-key.pem")}
}

// issue writes name.pem and name-key.pem unless they exist.
func (ca *CA) issue(name, cn string, usage x509.ExtKeyUsage, ips []net.IP) (Files, error) {
	f := ca.files(name)
	if _, err := os.Stat(f.Cert); err == nil {
		return f, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return f, fmt.Errorf("issue the etcd certificate %s: %w", name, err)
	}
	// The key first: a certificate without its key would be taken as
	// issued.
	if err := writeKey(f.Key, key); err != nil {
		return f, err
	}
	return f, writePEM(f.Cert, "CERTIFICATE", der)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
