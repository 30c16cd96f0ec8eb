package daemon

import (
	"crypto"
	"fmt"
	"os"
	"strings"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
	"github.com/feedbackd/feedbackd/pkg/secrets"
)

// Keyring loads the keys that encrypt secrets at rest: secrets.keys first,
// then the lines of secrets.key_file. The first key encrypts.
func (c *Config) Keyring() (*secrets.Keyring, error) {
	keys, err := secrets.ParseKeys(c.Secrets.Keys)
	if err != nil {
		return nil, fmt.Errorf("secrets.keys: %w", err)
	}
	if c.Secrets.KeyFile != "" {
		more, err := secrets.ReadKeyFile(c.Secrets.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("secrets.key_file: %w", err)
		}
		keys = append(keys, more...)
	}
	kr, err := secrets.NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return kr, nil
}

// AdminAuth builds the verifier of admin API tokens.
func (c *Config) AdminAuth() (*adminauth.Verifier, error) {
	j := c.Admin.JWT
	o := adminauth.Options{Token: c.Admin.Token, HMACSecret: []byte(j.HMACSecret), Issuer: j.Issuer, Audience: j.Audience}
	if j.HMACSecretFile != "" {
		b, err := os.ReadFile(j.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("admin.jwt.hmac_secret_file: %w", err)
		}
		if o.HMACSecret = []byte(strings.TrimSpace(string(b))); len(o.HMACSecret) < 32 {
			return nil, fmt.Errorf("admin.jwt.hmac_secret_file: the secret must be at least 32 characters")
		}
	}
	add := func(key string, keys map[string]crypto.PublicKey, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if o.PublicKeys == nil {
			o.PublicKeys = map[string]crypto.PublicKey{}
		}
		for kid, k := range keys {
			o.PublicKeys[kid] = k
		}
		return nil
	}
	if j.PublicKeyFile != "" {
		keys, err := adminauth.ReadPublicKeyFile(j.PublicKeyFile)
		if err := add("admin.jwt.public_key_file", keys, err); err != nil {
			return nil, err
		}
	}
	if j.JWKSFile != "" {
		keys, err := adminauth.ReadJWKSFile(j.JWKSFile)
		if err := add("admin.jwt.jwks_file", keys, err); err != nil {
			return nil, err
		}
	}
	return adminauth.New(o), nil
}
