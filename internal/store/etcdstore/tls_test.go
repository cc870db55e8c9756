package etcdstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/store/etcdstore"
	"github.com/weftnet/weft/internal/store/etcdstore/etcdtest"
)

// certs writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, and returns their paths.
func certs(t *testing.T) (ca, srvCert, srvKey, cliCert, cliKey string) {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wta test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kb)
	}
	srvCert, srvKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return
}

func TestMutualTLS(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := certs(t)
	srv := etcdtest.StartTLS(t, ca, srvCert, srvKey)
	opts := etcdstore.Config{Endpoints: []string{srv.Endpoint}, Prefix: uniquePrefix(),
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, OpTimeout: 2 * time.Second}
	ctx := context.Background()

	good := opts
	good.CAFile, good.CertFile, good.KeyFile = ca, cliCert, cliKey
	s, err := etcdstore.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AcquireLease(ctx, "node-a", netip.Prefix{}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}

	// Without a client certificate etcd refuses the client.
	noCert := opts
	noCert.CAFile = ca
	s2, err := etcdstore.Open(noCert)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.AcquireLease(ctx, "node-b", netip.Prefix{}); err == nil {
		t.Fatal("etcd accepted a client without a certificate")
	}
	bad := good
	bad.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := etcdstore.Open(bad); err == nil {
		t.Fatal("Open accepted a missing CA file")
	}
}
