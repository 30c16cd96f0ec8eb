package endpointauth

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ReservedClaims are set by feedbackd and cannot come from a config.
var ReservedClaims = []string{"iss", "sub", "aud", "iat", "exp", "nbf", "jti", "body_sha256"}

// DefaultIssuer is the iss claim unless the config sets one.
const DefaultIssuer = "feedbackd"

// JWT signs the token of each delivery of one config. It is immutable and
// safe for concurrent use; its String method never shows the key.
type JWT struct {
	alg      string
	method   jwt.SigningMethod
	key      any
	kid      string
	issuer   string
	subject  string
	audience string
	ttl      time.Duration
	claims   map[string]any
}

func (j *JWT) String() string { return "endpointauth.JWT{" + j.alg + ", kid " + j.kid + "}" }

// NewJWT prepares a signer. material is the key (see GenerateKey).
func NewJWT(alg, kid, material, issuer, subject, audience string, ttl time.Duration, claims map[string]any) (*JWT, error) {
	key, err := ParseKey(alg, material)
	if err != nil {
		return nil, err
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		return nil, fmt.Errorf("unknown algorithm %q", alg)
	}
	if issuer == "" {
		issuer = DefaultIssuer
	}
	return &JWT{alg: alg, method: method, key: key, kid: kid, issuer: issuer, subject: subject,
		audience: audience, ttl: ttl, claims: claims}, nil
}

// Token returns the signed token for one attempt of webhook id with body:
// iss, sub (the organisation), aud, iat, exp, jti (the webhook-id),
// body_sha256 (base64url SHA-256 of the body) and the config's claims.
func (j *JWT) Token(id string, body []byte, now time.Time) (string, error) {
	claims := jwt.MapClaims{}
	for k, v := range j.claims {
		claims[k] = v
	}
	sum := sha256.Sum256(body)
	claims["iss"] = j.issuer
	claims["sub"] = j.subject
	if j.audience != "" {
		claims["aud"] = j.audience
	}
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(j.ttl).Unix()
	claims["jti"] = id
	claims["body_sha256"] = base64.RawURLEncoding.EncodeToString(sum[:])
	t := jwt.NewWithClaims(j.method, claims)
	t.Header["kid"] = j.kid
	return t.SignedString(j.key)
}
