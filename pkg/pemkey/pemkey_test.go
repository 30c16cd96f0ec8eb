package pemkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	block := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotAfter: time.Now().Add(time.Hour)}
	cert := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey))
	pkcs8 := must(x509.MarshalPKCS8PrivateKey(edKey))
	ecDER := must(x509.MarshalECPrivateKey(ecKey))

	cases := []struct {
		name  string
		kind  Kind
		in    []byte
		check func(any) bool // the key's type; nil: an error is expected
		err   string         // the error's message
	}{
		{"PKIX public key", Public, block("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))),
			func(k any) bool { return k.(*rsa.PublicKey).Equal(&rsaKey.PublicKey) }, ""},
		{"PKCS #1 public key", Public, block("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)),
			func(k any) bool { return k.(*rsa.PublicKey).Equal(&rsaKey.PublicKey) }, ""},
		{"certificate", Public, block("CERTIFICATE", cert),
			func(k any) bool { return k.(*ecdsa.PublicKey).Equal(&ecKey.PublicKey) }, ""},
		{"PKCS #8 private key", Private, block("PRIVATE KEY", pkcs8),
			func(k any) bool { return k.(ed25519.PrivateKey).Equal(edKey) }, ""},
		{"PKCS #1 private key", Private, block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)),
			func(k any) bool { return k.(*rsa.PrivateKey).Equal(rsaKey) }, ""},
		{"SEC 1 private key", Private, block("EC PRIVATE KEY", ecDER),
			func(k any) bool { return k.(*ecdsa.PrivateKey).Equal(ecKey) }, ""},
		{"not PEM", Private, []byte("MC4CAQAwBQYDK2VwBCIEI"), nil, "not PEM"},
		{"private key for a public one", Public, block("PRIVATE KEY", pkcs8), nil, `PEM block "PRIVATE KEY" is not a public key`},
		{"public key for a private one", Private, block("PUBLIC KEY", cert), nil, `PEM block "PUBLIC KEY" is not a private key`},
		{"certificate for a private key", Private, block("CERTIFICATE", cert), nil, `PEM block "CERTIFICATE" is not a private key`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, err := Parse(c.in, c.kind)
			if c.check != nil {
				if err != nil || !c.check(key) {
					t.Fatalf("Parse: %T, %v", key, err)
				}
				return
			}
			if err == nil || err.Error() != c.err {
				t.Fatalf("Parse: %v, want %q", err, c.err)
			}
			if errors.Is(err, ErrNotPEM) != (c.err == "not PEM") {
				t.Fatalf("errors.Is(%v, ErrNotPEM) is wrong", err)
			}
		})
	}
}

// A block that does not parse is a *ParseError with crypto/x509's message,
// which does not quote the material.
func TestParseError(t *testing.T) {
	der := []byte("garbage that is not DER at all")
	for _, c := range []struct {
		kind Kind
		typ  string
	}{{Public, "PUBLIC KEY"}, {Public, "RSA PUBLIC KEY"}, {Public, "CERTIFICATE"}, {Private, "PRIVATE KEY"}, {Private, "RSA PRIVATE KEY"}, {Private, "EC PRIVATE KEY"}} {
		_, err := Parse(pem.EncodeToMemory(&pem.Block{Type: c.typ, Bytes: der}), c.kind)
		var perr *ParseError
		if !errors.As(err, &perr) || perr.Type != c.typ || err.Error() != perr.Err.Error() {
			t.Fatalf("%s: %v, want a *ParseError with x509's message", c.typ, err)
		}
		if strings.Contains(err.Error(), "garbage") {
			t.Fatalf("%s: the error quotes the material: %v", c.typ, err)
		}
	}
}
