// Package adminauth decides who calls the admin API. A bearer token is the
// static admin.token, which may do everything, or a JWT signed with a key
// feedbackd is configured to trust, whose scope claim says what it may do:
// "admin" (everything) or "org:<imsOrg>" (that organisation's configs,
// campaigns, tests and dead letters; several space-separated scopes are
// allowed).
package adminauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// Principal is what a caller may do.
type Principal struct {
	Admin bool
	Orgs  []string // with Admin false: the organisations it may act on
}

// Allows reports whether the principal may act on org's resources.
func (p Principal) Allows(org string) bool { return p.Admin || slices.Contains(p.Orgs, org) }

// ErrUnauthorized is returned for a missing, wrong or expired token. Its
// wrapped detail is for logs and never includes the token.
var ErrUnauthorized = errors.New("a valid bearer token is required")

// Options are the trusted credentials. Any may be empty; JWTs are accepted
// if HMACSecret, PublicKeys or both are set.
type Options struct {
	Token      string                      // static token: admin
	HMACSecret []byte                      // HS256/384/512 tokens
	PublicKeys map[string]crypto.PublicKey // by kid ("" matches any kid): RS*, ES*, EdDSA tokens
	Issuer     string                      // required iss, if set
	Audience   string                      // required aud, if set
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	opts   Options
	parser *jwt.Parser
}

// New returns a Verifier.
func New(o Options) *Verifier {
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30 * time.Second),
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	return &Verifier{opts: o, parser: jwt.NewParser(popts...)}
}

// JWTEnabled reports whether JWTs can be accepted at all.
func (v *Verifier) JWTEnabled() bool { return len(v.opts.HMACSecret) > 0 || len(v.opts.PublicKeys) > 0 }

// Verify returns the principal of a bearer token.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrUnauthorized
	}
	if v.opts.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(v.opts.Token)) == 1 {
		return Principal{Admin: true}, nil
	}
	if !v.JWTEnabled() || strings.Count(token, ".") != 2 {
		return Principal{}, ErrUnauthorized
	}
	var claims struct {
		jwt.RegisteredClaims
		Scope string `json:"scope"`
	}
	if _, err := v.parser.ParseWithClaims(token, &claims, v.key); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	var p Principal
	for _, s := range strings.Fields(claims.Scope) {
		switch {
		case s == "admin":
			p.Admin = true
		case strings.HasPrefix(s, "org:"):
			org := strings.TrimPrefix(s, "org:")
			if !event.IsTenantID(org) { // never a pattern: org:* is not every organisation
				return Principal{}, fmt.Errorf("%w: the token's scope names an organisation that is not a valid imsOrg id", ErrUnauthorized)
			}
			p.Orgs = append(p.Orgs, org)
		}
	}
	if !p.Admin && len(p.Orgs) == 0 {
		return Principal{}, fmt.Errorf("%w: the token's scope grants nothing (want admin or org:<imsOrg>)", ErrUnauthorized)
	}
	return p, nil
}

// key picks the verification key for a token, by algorithm family and kid.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(v.opts.HMACSecret) == 0 {
			return nil, errors.New("HMAC tokens are not accepted")
		}
		return v.opts.HMACSecret, nil
	}
	kid, _ := t.Header["kid"].(string)
	k, ok := v.opts.PublicKeys[kid]
	if !ok {
		k, ok = v.opts.PublicKeys[""]
	}
	if !ok {
		return nil, fmt.Errorf("no key for kid %q", kid)
	}
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, errors.New("unsupported key type")
}
