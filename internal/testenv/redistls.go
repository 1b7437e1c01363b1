package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisTLS is a private redis-server that also listens with TLS, with a
// throwaway CA made for the test. Its plain port (Redis.Addr) stays open
// for the test's own checks.
type RedisTLS struct {
	*Redis
	TLSAddr string // host:port of the TLS listener
	CAFile  string // PEM of the CA that signed the server's certificate
}

// StartRedisTLS starts a redis-server with a TLS port whose certificate (for
// 127.0.0.1) a CA of the test's own signed, and the ACL users given, each an
// ACL SETUSER rule list such as "app on >secret ~app:* +get". Clients need
// no certificate of their own.
func StartRedisTLS(t testing.TB, users ...string) *RedisTLS {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCerts(t, dir)
	tlsPort := FreePort(t)
	args := []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no",
	}
	for _, u := range users {
		args = append(append(args, "--user"), strings.Fields(u)...)
	}
	r := newRedis(t, RedisOptions{}, args...)
	r.p.startAndWait(t, r.ready)
	return &RedisTLS{Redis: r, TLSAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), CAFile: caFile}
}

// writeTestCerts writes a CA and a server certificate for 127.0.0.1 signed
// by it, as PEM files in dir.
func writeTestCerts(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatalf("testenv: test certificates: %v", err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flashsale test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	must(err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
