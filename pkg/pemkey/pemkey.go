// Package pemkey reads a key from a PEM block: a public key that verifies
// admin JWTs (adminauth), a private key that signs endpoint JWTs
// (endpointauth). Its errors never quote the input: callers put them in
// front of operators and tenants, and the input may be a private key.
package pemkey

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Kind is the kind of key Parse reads.
type Kind int

const (
	Public  Kind = iota // PKIX "PUBLIC KEY", PKCS #1 "RSA PUBLIC KEY", or a "CERTIFICATE"'s public key
	Private             // PKCS #8 "PRIVATE KEY", PKCS #1 "RSA PRIVATE KEY", SEC 1 "EC PRIVATE KEY"
)

func (k Kind) String() string {
	if k == Private {
		return "private"
	}
	return "public"
}

// parsers read the DER of each PEM block type, by kind of key.
var parsers = [...]map[string]func([]byte) (any, error){
	Public: {
		"PUBLIC KEY":     x509.ParsePKIXPublicKey,
		"RSA PUBLIC KEY": func(der []byte) (any, error) { return x509.ParsePKCS1PublicKey(der) },
		"CERTIFICATE": func(der []byte) (any, error) {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, err
			}
			return cert.PublicKey, nil
		},
	},
	Private: {
		"PRIVATE KEY":     x509.ParsePKCS8PrivateKey,
		"RSA PRIVATE KEY": func(der []byte) (any, error) { return x509.ParsePKCS1PrivateKey(der) },
		"EC PRIVATE KEY":  func(der []byte) (any, error) { return x509.ParseECPrivateKey(der) },
	},
}

// ErrNotPEM says the input holds no PEM block.
var ErrNotPEM = errors.New("not PEM")

// ParseError says a PEM block of a key's type did not parse as one. Its
// message is crypto/x509's (which names no key material); callers that
// say less to tenants test for it with errors.As.
type ParseError struct {
	Type string // the PEM block's type
	Err  error  // crypto/x509's
}

func (e *ParseError) Error() string { return e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads the first PEM block of b as a key of kind, of the type
// crypto/x509 returns for the block (*rsa.PublicKey, *ecdsa.PrivateKey,
// ed25519.PrivateKey, ...): callers check it is one they use. It returns ErrNotPEM if b holds no PEM block, an error
// `PEM block "<type>" is not a <kind> key` for a block of another type,
// and a *ParseError if the block does not parse.
func Parse(b []byte, kind Kind) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, ErrNotPEM
	}
	parse, ok := parsers[kind][block.Type]
	if !ok {
		return nil, fmt.Errorf("PEM block %q is not a %s key", block.Type, kind)
	}
	key, err := parse(block.Bytes)
	if err != nil {
		return nil, &ParseError{Type: block.Type, Err: err}
	}
	return key, nil
}
