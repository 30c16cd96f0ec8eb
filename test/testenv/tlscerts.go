package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throw-away certificate authority of one test with a server
// certificate for 127.0.0.1 and localhost and a client certificate, all
// written as PEM files under Dir.
type PKI struct {
	Dir                     string
	CAFile                  string // the CA that signed the server and client certificates
	OtherCAFile             string // an unrelated CA: verification against it fails
	ServerCert, ServerKey   string
	ClientCert, ClientKey   string
	WrongHostCert, WrongKey string // signed by the CA, for "other.example" only
	// StrangerCert and StrangerKey are a client certificate of the
	// unrelated CA: a broker requiring client certificates refuses it.
	StrangerCert, StrangerKey string
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
}

// NewPKI generates the certificates.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	p.ca, p.caKey = p.authority(t, "feedbackd test CA", "ca")
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	otherCA, otherKey := p.authority(t, "unrelated CA", "otherca")
	p.OtherCAFile = filepath.Join(p.Dir, "otherca.pem")
	p.ServerCert, p.ServerKey = p.leaf(t, "server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = p.leaf(t, "client", nil, nil, x509.ExtKeyUsageClientAuth)
	p.WrongHostCert, p.WrongKey = p.leaf(t, "wronghost", []string{"other.example"}, nil, x509.ExtKeyUsageServerAuth)
	ca, caKey := p.ca, p.caKey
	p.ca, p.caKey = otherCA, otherKey
	p.StrangerCert, p.StrangerKey = p.leaf(t, "stranger", nil, nil, x509.ExtKeyUsageClientAuth)
	p.ca, p.caKey = ca, caKey
	return p
}

// ServerTLS is a listener configuration with the server certificate;
// requireClient asks for and verifies a client certificate (mTLS).
func (p *PKI) ServerTLS(t testing.TB, requireClient bool) *tls.Config {
	return p.serverTLS(t, p.ServerCert, p.ServerKey, requireClient)
}

// WrongHostTLS serves a certificate valid for another name only.
func (p *PKI) WrongHostTLS(t testing.TB) *tls.Config {
	return p.serverTLS(t, p.WrongHostCert, p.WrongKey, false)
}

func (p *PKI) serverTLS(t testing.TB, certFile, keyFile string, requireClient bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if requireClient {
		pool := x509.NewCertPool()
		pool.AddCert(p.ca)
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c
}

func (p *PKI) authority(t testing.TB, cn, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(p.Dir, name+".pem"), "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func (p *PKI) leaf(t testing.TB, name string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: dns, IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
