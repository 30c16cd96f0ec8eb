package webhook

import (
	"errors"
	"slices"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/signature"
)

// Generated is the secret material created for a config, returned once to
// whoever asked for it.
type Generated struct {
	SigningSecret string `json:"signingSecret,omitempty"`
	JWTSecret     string `json:"jwtSecret,omitempty"` // HS256 secret feedbackd generated
	KeyID         string `json:"keyId,omitempty"`     // kid of a new JWT key
}

// NewStored makes the stored form of a new config: a fresh signing secret,
// and a JWT key (given or generated) for jwt auth.
func NewStored(c *Config, cr Credentials, now time.Time) (*Stored, Generated, error) {
	secret, err := signature.NewSecret()
	if err != nil {
		return nil, Generated{}, err
	}
	c.CreatedAt, c.UpdatedAt = now, now
	st := &Stored{Config: *c, Secrets: []Secret{{Value: secret}}}
	g := Generated{SigningSecret: secret}
	if err := st.setAuth(cr, Credentials{}, now, 0, &g); err != nil {
		return nil, Generated{}, err
	}
	return st, g, nil
}

// ErrCredentialMissing is returned when auth needs a credential that
// neither the request nor the stored config has.
var ErrCredentialMissing = errors.New("credential missing")

// Replace changes the stored config to c, keeping its signing secrets and,
// where the request brings none and the auth kind is unchanged, its JWT key
// and client secret. A replaced JWT key stays valid for grace.
func (st *Stored) Replace(c *Config, cr Credentials, now time.Time, grace time.Duration) (Generated, error) {
	created, old := st.CreatedAt, st.Config
	c.CreatedAt, c.UpdatedAt = created, now
	kept := Credentials{}
	if old.Auth.Type == AuthOAuth2 && c.Auth.Type == AuthOAuth2 {
		kept.ClientSecret = st.ClientSecret
	}
	st.Config = *c
	var g Generated
	if old.Auth.Type == AuthJWT && c.Auth.Type == AuthJWT && old.Auth.Algorithm == c.Auth.Algorithm && cr.PrivateKey == "" && cr.Secret == "" {
		st.Auth.KeyID = old.Auth.KeyID // same key
		return g, st.setAuth(Credentials{}, kept, now, grace, nil)
	}
	return g, st.setAuth(cr, kept, now, grace, &g)
}

// setAuth fits the stored credentials to st.Auth: given ones replace kept
// ones; a JWT key missing from both is generated (and reported in g).
func (st *Stored) setAuth(given, kept Credentials, now time.Time, grace time.Duration, g *Generated) error {
	switch st.Auth.Type {
	case AuthNone:
		st.JWTKeys, st.ClientSecret = expireKeys(st.JWTKeys, now, grace), ""
	case AuthOAuth2:
		st.JWTKeys = expireKeys(st.JWTKeys, now, grace)
		st.ClientSecret = given.ClientSecret
		if st.ClientSecret == "" {
			st.ClientSecret = kept.ClientSecret
		}
		if st.ClientSecret == "" {
			return &FieldError{Field: "auth.clientSecret", Message: "required field is missing"}
		}
	case AuthJWT:
		if g == nil && len(st.JWTKeys) > 0 { // keep the current key
			st.Auth.KeyID = st.JWTKeys[0].ID
			return nil
		}
		material := given.PrivateKey + given.Secret
		if material == "" {
			var err error
			if material, err = endpointauth.GenerateKey(st.Auth.Algorithm); err != nil {
				return err
			}
			if st.Auth.Algorithm == endpointauth.HS256 && g != nil {
				g.JWTSecret = material // the receiver needs it: shown once
			}
		}
		key := JWTKey{ID: endpointauth.NewKeyID(), Algorithm: st.Auth.Algorithm, Material: material}
		st.JWTKeys = append([]JWTKey{key}, expireKeys(st.JWTKeys, now, grace)...)
		st.Auth.KeyID = key.ID
		if g != nil {
			g.KeyID = key.ID
		}
	}
	return nil
}

// expireKeys gives keys without an expiry one at now+grace, and drops
// those already expired.
func expireKeys(keys []JWTKey, now time.Time, grace time.Duration) []JWTKey {
	out := keys[:0:0]
	for _, k := range keys {
		if k.NotAfter.IsZero() {
			k.NotAfter = now.Add(grace)
		}
		if k.NotAfter.After(now) {
			out = append(out, k)
		}
	}
	return out
}

// RotateSecret puts a new signing secret first; the others stay valid for
// grace (both sign meanwhile). It returns the new secret and when the
// previous ones stop being sent.
func (st *Stored) RotateSecret(now time.Time, grace time.Duration) (string, time.Time, error) {
	secret, err := signature.NewSecret()
	if err != nil {
		return "", time.Time{}, err
	}
	kept := []Secret{{Value: secret}}
	until := now.Add(grace)
	for _, s := range st.Secrets {
		if s.NotAfter.IsZero() {
			s.NotAfter = until
		}
		if s.NotAfter.After(now) {
			kept = append(kept, s)
		}
	}
	st.Secrets, st.UpdatedAt = kept, now
	return secret, until, nil
}

// ErrNotJWT is returned when rotating the JWT key of a config without one.
var ErrNotJWT = errors.New("auth.type is not jwt")

// RotateKey gives a jwt config a new key of the same algorithm; the old
// one stays in the JWKS for grace. For HS256 the new secret is returned.
func (st *Stored) RotateKey(now time.Time, grace time.Duration) (Generated, error) {
	if st.Auth.Type != AuthJWT {
		return Generated{}, ErrNotJWT
	}
	var g Generated
	err := st.setAuth(Credentials{}, Credentials{}, now, grace, &g)
	st.UpdatedAt = now
	return g, err
}

// Prune drops secrets and keys past their NotAfter; current ones (no
// NotAfter) stay.
func (st *Stored) Prune(now time.Time) {
	live := func(notAfter time.Time) bool { return notAfter.IsZero() || notAfter.After(now) }
	st.Secrets = slices.DeleteFunc(st.Secrets, func(s Secret) bool { return !live(s.NotAfter) })
	st.JWTKeys = slices.DeleteFunc(st.JWTKeys, func(k JWTKey) bool { return !live(k.NotAfter) })
}
