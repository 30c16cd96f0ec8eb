// Package secrets encrypts the secret parts of webhook configs (signing
// secrets, JWT private keys, OAuth2 client secrets) where they are stored:
// the configs topic and Redis. It uses AES-256-GCM with keys an operator
// provides; the first key encrypts, every key decrypts, so keys can be
// rotated by putting a new one first.
package secrets

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// prefix marks an encrypted value: "enc:v1:<key id>:<base64url(nonce|ciphertext)>".
const prefix = "enc:v1:"

// ErrNoKey is returned when a value was encrypted with a key that is not
// in the keyring.
var ErrNoKey = errors.New("secret encrypted with a key that is not configured")

// Keyring seals and opens secrets. It is safe for concurrent use. Its
// String method never shows key material.
type Keyring struct {
	keys []key // keys[0] seals
}

type key struct {
	id   string
	aead cipher.AEAD
}

func (k *Keyring) String() string { return fmt.Sprintf("secrets.Keyring{%d keys}", len(k.keys)) }

// NewKeyring takes 32-byte keys, the sealing one first.
func NewKeyring(raw ...[]byte) (*Keyring, error) {
	if len(raw) == 0 {
		return nil, errors.New("no encryption key")
	}
	k := &Keyring{}
	for i, r := range raw {
		if len(r) != 32 {
			return nil, fmt.Errorf("key %d is %d bytes, want 32 (AES-256)", i+1, len(r))
		}
		block, err := aes.NewCipher(r)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(r)
		k.keys = append(k.keys, key{id: hex.EncodeToString(sum[:4]), aead: aead})
	}
	return k, nil
}

// ParseKeys reads base64 keys, one per entry; blank entries and lines
// starting with # are skipped.
func ParseKeys(entries []string) ([][]byte, error) {
	var out [][]byte
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			if b, err = base64.RawURLEncoding.DecodeString(e); err != nil {
				return nil, fmt.Errorf("key %d is not base64", i+1)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// ReadKeyFile reads keys from a file, one base64 key per line.
func ReadKeyFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	keys, err := ParseKeys(lines)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// GenerateKey returns a new random key, base64-encoded.
func GenerateKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Seal encrypts plaintext bound to context (e.g. the config key): it can be
// opened only with the same context. An empty plaintext stays empty.
func (k *Keyring) Seal(plaintext, context string) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	sk := k.keys[0]
	nonce := make([]byte, sk.aead.NonceSize(), sk.aead.NonceSize()+len(plaintext)+sk.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := sk.aead.Seal(nonce, nonce, []byte(plaintext), []byte(context))
	return prefix + sk.id + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value Seal made. A value without the encrypted prefix is
// returned as is: it was stored before encryption was configured, and is
// encrypted the next time it is written.
func (k *Keyring) Open(value, context string) (string, error) {
	rest, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return value, nil
	}
	id, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("malformed encrypted secret")
	}
	for _, kk := range k.keys {
		if kk.id != id {
			continue
		}
		sealed, err := base64.RawURLEncoding.DecodeString(b64)
		if err != nil || len(sealed) < kk.aead.NonceSize() {
			return "", errors.New("malformed encrypted secret")
		}
		n := kk.aead.NonceSize()
		plain, err := kk.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
		if err != nil {
			return "", errors.New("encrypted secret does not open (wrong key or tampered)")
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("%w (key id %s)", ErrNoKey, id)
}
