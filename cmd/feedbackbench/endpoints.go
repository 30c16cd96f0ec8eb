package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

// maxHosts bounds --hosts: the addresses are 127.0.0.2 to 127.0.255.255.
const maxHosts = 1<<16 - 2

// hostIPs are the receiver's addresses for --hosts n: 127.0.0.1 alone for
// one host, else n loopback addresses from 127.0.0.2 on (Linux routes all
// of 127.0.0.0/8 to the loopback interface; other systems may not).
func hostIPs(n int) []net.IP {
	if n <= 1 {
		return []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	ips := make([]net.IP, n)
	for i := range ips {
		a := i + 2
		ips[i] = net.IPv4(127, 0, byte(a>>8), byte(a))
	}
	return ips
}

// Files in the --tls directory: the CA's certificate (SSL_CERT_FILE for
// feedbackd) and the receiver's certificate and key.
const (
	caFile   = "ca.pem"
	certFile = "receiver.pem"
	keyFile  = "receiver-key.pem"
)

// benchTLS is what --tls made: a directory with the files above, and the
// CA as a pool for the ceiling clients.
type benchTLS struct {
	dir  string
	pool *x509.CertPool
}

// makeTLS makes an ECDSA P-256 CA valid for a day and a leaf it signs for
// ips (one certificate for every host: with --hosts 1000 it names 1,001
// addresses, about 6 KB sent in each full handshake), and writes them to a
// new temporary directory.
func makeTLS(ips []net.IP) (*benchTLS, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feedbackbench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "feedbackbench receiver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "feedbackbench-tls")
	if err != nil {
		return nil, err
	}
	for name, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: leafDER}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &benchTLS{dir: dir, pool: pool}, nil
}

// clientConfig is the ceiling clients' TLS configuration: the bench's CA,
// HTTP/1.1 as feedbackd speaks it.
func (b *benchTLS) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: b.pool, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
}

// serverConfig is the receiver's TLS configuration from the files in dir;
// counted is called after every handshake, full or resumed.
func serverConfig(dir string, counted func(resumed bool)) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("receiver certificate: %w", err)
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("receiver certificate: none in " + dir)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12,
		// Called for new and resumed sessions alike, once per connection.
		VerifyConnection: func(cs tls.ConnectionState) error { counted(cs.DidResume); return nil },
	}, nil
}
