package endpointauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Every algorithm: a generated key signs tokens that go-jose verifies with
// the published JWK (or the shared secret), with the claims a receiver
// checks.
func TestTokensVerifyIndependently(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			material, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			j, err := NewJWT(alg, "k1", material, "", "org1", "aud1", time.Minute, map[string]any{"x": 1})
			if err != nil {
				t.Fatal(err)
			}
			body := []byte(`{"requestId":"r"}`)
			raw, err := j.Token("msg_1", body, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var key any = []byte(material)
			if Asymmetric(alg) {
				jwk, err := PublicJWK(alg, "k1", material)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(jwk)
				var jk jose.JSONWebKey
				if err := json.Unmarshal(b, &jk); err != nil {
					t.Fatalf("go-jose cannot read our JWK %s: %v", b, err)
				}
				key = jk
			}
			tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			var c josejwt.Claims
			var all map[string]any
			if err := tok.Claims(key, &c, &all); err != nil {
				t.Fatalf("go-jose rejects the signature: %v", err)
			}
			sum := sha256.Sum256(body)
			if c.Issuer != DefaultIssuer || c.Subject != "org1" || !c.Audience.Contains("aud1") || c.ID != "msg_1" ||
				all["body_sha256"] != base64.RawURLEncoding.EncodeToString(sum[:]) || all["x"] != 1.0 || tok.Headers[0].KeyID != "k1" {
				t.Fatalf("claims %+v %v", c, all)
			}
			if strings.Contains(j.String(), material) {
				t.Fatal("String shows the key")
			}
		})
	}
}

func TestParseKeyRefusesMismatches(t *testing.T) {
	rsaKey, _ := GenerateKey(RS256)
	ecKey, _ := GenerateKey(ES256)
	for _, c := range []struct{ alg, material string }{
		{ES256, rsaKey}, {RS256, ecKey}, {EdDSA, rsaKey}, {HS256, "short"}, {RS256, "not pem"},
	} {
		if _, err := ParseKey(c.alg, c.material); err == nil {
			t.Errorf("ParseKey(%s) accepted the wrong material", c.alg)
		} else if strings.Contains(err.Error(), c.material) && len(c.material) > 10 {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

// FuzzToken: whatever the body, id and claims, the token verifies and its
// body_sha256 matches the body.
func FuzzToken(f *testing.F) {
	material, _ := GenerateKey(ES256)
	jwk, _ := PublicJWK(ES256, "k", material)
	b, _ := json.Marshal(jwk)
	var key jose.JSONWebKey
	_ = json.Unmarshal(b, &key)
	f.Add([]byte(`{"a":1}`), "msg_1", "claim")
	f.Fuzz(func(t *testing.T, body []byte, id, claim string) {
		if !utf8.ValidString(id) || !utf8.ValidString(claim) {
			return // ids and claims come from validated JSON
		}
		j, err := NewJWT(ES256, "k", material, "iss", "org", "", time.Minute, map[string]any{"c": claim})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := j.Token(id, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var all map[string]any
		if err := tok.Claims(key, &all); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if all["body_sha256"] != base64.RawURLEncoding.EncodeToString(sum[:]) || all["jti"] != id || all["c"] != claim {
			t.Fatalf("claims %v", all)
		}
	})
}

// The messages tenants read in a field error for auth.privateKey.
func TestParseKeyErrors(t *testing.T) {
	block := func(typ, der string) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte(der)}))
	}
	for _, c := range []struct{ material, want string }{
		{"not pem at all", "private key is not PEM"},
		{block("PUBLIC KEY", "x"), `PEM block "PUBLIC KEY" is not a private key`},
		{block("PRIVATE KEY", "secret-looking bytes"), "private key does not parse"},
		{block("EC PRIVATE KEY", "secret-looking bytes"), "private key does not parse"},
	} {
		if _, err := ParseKey(RS256, c.material); err == nil || err.Error() != c.want {
			t.Errorf("ParseKey(%q): %v, want %q", c.material, err, c.want)
		}
	}
}
