package adminauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/feedbackd/feedbackd/pkg/pemkey"
)

// ReadPublicKeyFile reads one PEM public key (PKIX "PUBLIC KEY", PKCS#1
// "RSA PUBLIC KEY" or a certificate) and returns it under kid "".
func ReadPublicKeyFile(path string) (map[string]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := pemkey.Parse(b, pemkey.Public)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return map[string]crypto.PublicKey{"": key}, nil
}

// ReadJWKSFile reads a JSON Web Key Set (RFC 7517) of RSA, EC (P-256,
// P-384) and OKP (Ed25519) public keys, by kid.
func ReadJWKSFile(path string) (map[string]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParseJWKS reads a JSON Web Key Set.
func ParseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Crv, N, E, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	out := map[string]crypto.PublicKey{}
	num := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, errors.New("bad base64url number")
		}
		return new(big.Int).SetBytes(b), nil
	}
	for i, k := range set.Keys {
		var key crypto.PublicKey
		switch k.Kty {
		case "RSA":
			n, err1 := num(k.N)
			e, err2 := num(k.E)
			if err := errors.Join(err1, err2); err != nil || !e.IsInt64() {
				return nil, fmt.Errorf("key %d: bad RSA key", i)
			}
			key = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			var curve elliptic.Curve
			size := 32
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve, size = elliptic.P384(), 48
			default:
				return nil, fmt.Errorf("key %d: curve %q not supported", i, k.Crv)
			}
			x, err1 := base64.RawURLEncoding.DecodeString(k.X)
			y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
			if errors.Join(err1, err2) != nil || len(x) != size || len(y) != size {
				return nil, fmt.Errorf("key %d: bad EC key", i)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %d: bad EC key", i)
			}
			key = pub
		case "OKP":
			x, err := base64.RawURLEncoding.DecodeString(k.X)
			if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("key %d: bad Ed25519 key", i)
			}
			key = ed25519.PublicKey(x)
		default:
			return nil, fmt.Errorf("key %d: kty %q not supported", i, k.Kty)
		}
		out[k.Kid] = key
	}
	return out, nil
}
