// Package endpointauth authenticates feedbackd to tenants' endpoints: JWTs
// it signs itself (HS256, RS256, ES256, EdDSA) and OAuth2 client-credentials
// access tokens it fetches and caches.
package endpointauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/feedbackd/feedbackd/pkg/pemkey"
)

// Signing algorithms of endpoint JWTs.
const (
	HS256 = "HS256" // shared secret
	RS256 = "RS256" // RSA key pair, 2048 bits or more
	ES256 = "ES256" // ECDSA P-256 key pair
	EdDSA = "EdDSA" // Ed25519 key pair
)

// Algorithms lists them, for validation and docs.
var Algorithms = []string{HS256, RS256, ES256, EdDSA}

// Asymmetric reports whether alg has a public key for the JWKS.
func Asymmetric(alg string) bool { return alg == RS256 || alg == ES256 || alg == EdDSA }

// minHMACBytes is the shortest HS256 secret accepted (RFC 7518 §3.2).
const minHMACBytes = 32

// NewKeyID returns a fresh key id. It says nothing about the tenant.
func NewKeyID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "k_" + base64.RawURLEncoding.EncodeToString(b)
}

// GenerateKey returns new key material for alg: for HS256 a secret of 32
// random bytes written in base64url (the key is that text, 43 bytes),
// otherwise a PKCS#8 PEM private key.
func GenerateKey(alg string) (string, error) {
	var priv any
	var err error
	switch alg {
	case HS256:
		b := make([]byte, minHMACBytes)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return base64.RawURLEncoding.EncodeToString(b), nil
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return "", fmt.Errorf("unknown algorithm %q", alg)
	}
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// ParseKey checks key material for alg and returns the signing key in the
// form golang-jwt takes: []byte, *rsa.PrivateKey, *ecdsa.PrivateKey or
// ed25519.PrivateKey. Its errors never quote the material.
func ParseKey(alg, material string) (any, error) {
	if alg == HS256 {
		// The key is the secret's bytes as written, as receivers' JWT
		// libraries take a shared secret.
		if len(material) < minHMACBytes {
			return nil, fmt.Errorf("HS256 secret must be at least %d bytes", minHMACBytes)
		}
		return []byte(material), nil
	}
	key, err := pemkey.Parse([]byte(material), pemkey.Private)
	var perr *pemkey.ParseError
	switch {
	case errors.Is(err, pemkey.ErrNotPEM):
		return nil, errors.New("private key is not PEM")
	case errors.As(err, &perr): // x509's detail is for operators, not tenants
		return nil, errors.New("private key does not parse")
	case err != nil: // names the block's type
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if alg != RS256 {
			break
		}
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key must be 2048 bits or more")
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if alg != ES256 {
			break
		}
		if k.Curve != elliptic.P256() {
			return nil, errors.New("ES256 needs a P-256 key")
		}
		return k, nil
	case ed25519.PrivateKey:
		if alg == EdDSA {
			return k, nil
		}
	}
	return nil, fmt.Errorf("the private key does not fit %s", alg)
}

// JWK is a public JSON Web Key (RFC 7517).
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// PublicJWK returns the public key of asymmetric key material.
func PublicJWK(alg, kid, material string) (JWK, error) {
	key, err := ParseKey(alg, material)
	if err != nil {
		return JWK{}, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	j := JWK{Kid: kid, Alg: alg, Use: "sig"}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		j.Kty, j.N, j.E = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return JWK{}, err
		}
		raw := pub.Bytes() // 0x04 | X | Y
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64(raw[1:33]), b64(raw[33:65])
	case ed25519.PrivateKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(k.Public().(ed25519.PublicKey))
	default:
		return JWK{}, fmt.Errorf("%s has no public key", alg)
	}
	return j, nil
}
