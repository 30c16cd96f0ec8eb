package adminauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const hmacSecret = "admin-hmac-secret-of-at-least-32-bytes"

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(scope string, exp time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"scope": scope, "iss": "ops", "aud": "feedbackd", "iat": time.Now().Unix(), "exp": time.Now().Add(exp).Unix()}
}

func TestVerify(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := New(Options{Token: "static-token-0123456789", HMACSecret: []byte(hmacSecret),
		PublicKeys: map[string]crypto.PublicKey{"k1": &ec.PublicKey}, Issuer: "ops", Audience: "feedbackd"})
	tests := []struct {
		name  string
		token string
		want  Principal
		ok    bool
	}{
		{"static", "static-token-0123456789", Principal{Admin: true}, true},
		{"hmac admin", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("admin", time.Hour)), Principal{Admin: true}, true},
		{"hmac two orgs", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:A org:B", time.Hour)), Principal{Orgs: []string{"A", "B"}}, true},
		{"es256 by kid", sign(t, jwt.SigningMethodES256, ec, "k1", claims("org:A", time.Hour)), Principal{Orgs: []string{"A"}}, true},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("admin", -time.Hour)), Principal{}, false},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", jwt.MapClaims{"scope": "admin", "iss": "ops", "aud": "feedbackd"}), Principal{}, false},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", jwt.MapClaims{"scope": "admin", "iss": "x", "aud": "feedbackd", "exp": time.Now().Add(time.Hour).Unix()}), Principal{}, false},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), "", claims("admin", time.Hour)), Principal{}, false},
		{"unknown kid", sign(t, jwt.SigningMethodES256, ec, "k2", claims("admin", time.Hour)), Principal{}, false},
		{"scope grants nothing", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("read org:", time.Hour)), Principal{}, false},
		// An organisation is an id, never a pattern the store could expand.
		{"org glob *", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:*", time.Hour)), Principal{}, false},
		{"org glob ?", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:?", time.Hour)), Principal{}, false},
		{"org glob class", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:[B]", time.Hour)), Principal{}, false},
		{"org with a slash", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:A/sb", time.Hour)), Principal{}, false},
		{"a valid org beside a glob", sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims("org:A org:*", time.Hour)), Principal{}, false},
		{"alg none", "eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImFkbWluIn0.", Principal{}, false},
		{"empty", "", Principal{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(tt.token)
			if (err == nil) != tt.ok || fmt.Sprint(p) != fmt.Sprint(tt.want) {
				t.Fatalf("Verify = %+v, %v", p, err)
			}
			if err != nil && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error is not ErrUnauthorized: %v", err)
			}
		})
	}
	if p := (Principal{Orgs: []string{"A"}}); !p.Allows("A") || p.Allows("B") || !(Principal{Admin: true}).Allows("B") {
		t.Fatal("Allows")
	}
}

func TestParseJWKS(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := ec.PublicKey.ECDH()
	raw := pub.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	set := fmt.Sprintf(`{"keys":[{"kty":"EC","kid":"e1","crv":"P-256","x":%q,"y":%q},{"kty":"OKP","kid":"o1","crv":"Ed25519","x":%q}]}`,
		b64(raw[1:33]), b64(raw[33:]), b64(make([]byte, 32)))
	keys, err := ParseJWKS([]byte(set))
	if err != nil || len(keys) != 2 {
		t.Fatalf("ParseJWKS = %v, %v", keys, err)
	}
	v := New(Options{PublicKeys: keys})
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ec, "e1", jwt.MapClaims{"scope": "admin", "exp": time.Now().Add(time.Hour).Unix()})); err != nil {
		t.Fatalf("token signed with a JWKS key: %v", err)
	}
	for _, bad := range []string{`{}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`, `{"keys":[{"kty":"oct","k":"AA"}]}`, `not json`} {
		if _, err := ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("ParseJWKS(%s) accepted", bad)
		}
	}
}

// FuzzVerify: whatever the token, Verify does not panic and admits only the
// static token or a token signed with the configured secret.
func FuzzVerify(f *testing.F) {
	f.Add(sign(f, jwt.SigningMethodHS256, []byte(hmacSecret), "", jwt.MapClaims{"scope": "admin", "exp": time.Now().Add(time.Hour).Unix()}))
	f.Add("static-token-0123456789")
	f.Add("eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImFkbWluIn0.")
	f.Add("a.b.c")
	v := New(Options{Token: "static-token-0123456789", HMACSecret: []byte(hmacSecret)})
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(token)
		if err != nil {
			return
		}
		if token == "static-token-0123456789" {
			return
		}
		if _, perr := jwt.Parse(token, func(*jwt.Token) (any, error) { return []byte(hmacSecret), nil },
			jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"})); perr != nil {
			t.Fatalf("admitted %q as %+v, but it is not validly signed: %v", token, p, perr)
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseJWKS(b) })
}
