package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// verifyToken is a receiver's check of a delivery's JWT, written with
// go-jose (independent of the golang-jwt feedbackd signs with): signature,
// iss, sub, aud, exp, jti = webhook-id and body_sha256 = the body's hash.
func verifyToken(authz string, body []byte, webhookID, org, aud string, key any) (map[string]any, error) {
	raw, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		return nil, errors.New("no bearer token")
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.HS256, jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	var std josejwt.Claims
	var all map[string]any
	if err := tok.Claims(key, &std, &all); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: "feedbackd", Subject: org, AnyAudience: []string{aud}, Time: time.Now()}, time.Second); err != nil {
		return nil, err
	}
	if std.ID != webhookID {
		return nil, fmt.Errorf("jti %q is not the webhook-id %q", std.ID, webhookID)
	}
	sum := sha256.Sum256(body)
	if all["body_sha256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return nil, errors.New("body_sha256 does not match the body")
	}
	return all, nil
}

// jwks fetches feedbackd's published keys, as a receiver would.
func (h *harness) jwks(t *testing.T) *jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(h.api + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return &set
}

func kidOf(t *testing.T, authz string) string {
	tok, err := josejwt.ParseSigned(strings.TrimPrefix(authz, "Bearer "), []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.HS256})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Headers[0].KeyID
}

func TestJWTAuthTowardsEndpoints(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Secrets.RotationGrace = 3 * time.Second })
	rc := newReceiver(t, nil)
	const aud = "https://hooks.example.com/feedback"
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))

	type tenant struct {
		org, alg string
		auth     map[string]any
		created  map[string]any
	}
	tenants := []*tenant{
		{org: "orgHS", alg: "HS256", auth: map[string]any{"type": "jwt", "algorithm": "HS256", "audience": aud}},
		{org: "orgRS", alg: "RS256", auth: map[string]any{"type": "jwt", "algorithm": "RS256", "audience": aud, "claims": map[string]any{"tenant": "t-1"}}},
		{org: "orgES", alg: "ES256", auth: map[string]any{"type": "jwt", "algorithm": "ES256", "audience": aud, "privateKey": ecPEM}},
		{org: "orgEd", alg: "EdDSA", auth: map[string]any{"type": "jwt", "algorithm": "EdDSA", "audience": aud, "expiresIn": "2m"}},
	}
	for _, tn := range tenants {
		cfg := webhookConfig(tn.org, "sb", rc.URL)
		cfg["auth"] = tn.auth
		if code := h.call("POST", "/v1/webhooks", cfg, &tn.created); code != 201 {
			t.Fatalf("create %s: %d %v", tn.org, code, tn.created)
		}
		auth := tn.created["auth"].(map[string]any)
		if auth["privateKey"] != nil || auth["secret"] != nil || auth["keyId"] == nil {
			t.Fatalf("%s: the answer's auth shows key material or no keyId: %v", tn.org, auth)
		}
		h.produceEvent(newEvent("jwt-"+tn.org, tn.org, "sb", "email", "delivered"))
	}
	h.eventually("4 deliveries", 20*time.Second, func() bool { return rc.count() == 4 })

	set := h.jwks(t)
	byID := map[string]delivery{}
	for _, d := range rc.deliveries() {
		byID[d.header.Get("webhook-id")] = d
	}
	for _, tn := range tenants {
		d := byID["jwt-"+tn.org]
		authz := d.header.Get("Authorization")
		var key any
		if tn.alg == "HS256" {
			secret, _ := tn.created["jwtSecret"].(string)
			if len(secret) < 32 {
				t.Fatalf("HS256: no generated secret returned at create: %v", tn.created)
			}
			key = []byte(secret)
		} else {
			keys := set.Key(kidOf(t, authz))
			if len(keys) != 1 {
				t.Fatalf("%s: kid %q not in the JWKS", tn.org, kidOf(t, authz))
			}
			key = keys[0]
		}
		claims, err := verifyToken(authz, d.body, d.header.Get("webhook-id"), tn.org, aud, key)
		if err != nil {
			t.Fatalf("%s (%s): independent verification failed: %v", tn.org, tn.alg, err)
		}
		if tn.org == "orgRS" && claims["tenant"] != "t-1" {
			t.Errorf("custom claim missing: %v", claims)
		}
		exp, iat := claims["exp"].(float64), claims["iat"].(float64)
		if want := map[string]float64{"orgEd": 120}[tn.org]; want == 0 && exp-iat != 300 || want != 0 && exp-iat != want {
			t.Errorf("%s: lifetime %v s", tn.org, exp-iat)
		}
		tampered := append([]byte(nil), d.body...)
		tampered[len(tampered)-2] ^= 1
		if _, err := verifyToken(authz, tampered, d.header.Get("webhook-id"), tn.org, aud, key); err == nil {
			t.Fatalf("%s: a token verified against a body it was not made for", tn.org)
		}
	}

	// Key rotation: the new kid signs at once; the old one stays in the
	// JWKS for the grace period, then leaves.
	oldKid := kidOf(t, byID["jwt-orgRS"].header.Get("Authorization"))
	var rotated map[string]any
	if code := h.call("POST", "/v1/webhooks/orgRS/sb/rotate-key", nil, &rotated); code != 200 || rotated["keyId"] == oldKid {
		t.Fatalf("rotate-key: %d %v", code, rotated)
	}
	newKid := rotated["keyId"].(string)
	set = h.jwks(t)
	if len(set.Key(oldKid)) != 1 || len(set.Key(newKid)) != 1 {
		t.Fatalf("JWKS during the grace period: %d old, %d new", len(set.Key(oldKid)), len(set.Key(newKid)))
	}
	h.produceEvent(newEvent("jwt-after-rotation", "orgRS", "sb", "email", "sent"))
	h.eventually("delivery after rotation", 20*time.Second, func() bool { return rc.count() == 5 })
	last := rc.deliveries()[4]
	if kid := kidOf(t, last.header.Get("Authorization")); kid != newKid {
		t.Fatalf("signed with %s after rotation, want %s", kid, newKid)
	}
	if _, err := verifyToken(last.header.Get("Authorization"), last.body, "jwt-after-rotation", "orgRS", aud, set.Key(newKid)[0]); err != nil {
		t.Fatal(err)
	}
	h.eventually("old kid gone from the JWKS", 15*time.Second, func() bool { return len(h.jwks(t).Key(oldKid)) == 0 })
}

// rotate-secret: deliveries carry two signatures (old and new secret), each
// valid, until the grace period ends; then only the new one.
func TestSigningSecretRotation(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Secrets.RotationGrace = 3 * time.Second })
	rc := newReceiver(t, nil)
	oldSecret := h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	var rot struct {
		SigningSecret      string    `json:"signingSecret"`
		PreviousValidUntil time.Time `json:"previousValidUntil"`
	}
	if code := h.call("POST", "/v1/webhooks/org1/sb1/rotate-secret", nil, &rot); code != 200 || !strings.HasPrefix(rot.SigningSecret, "whsec_") || rot.SigningSecret == oldSecret {
		t.Fatalf("rotate-secret: %d %+v", code, rot)
	}
	h.produceEvent(newEvent("during-grace", "org1", "sb1", "email", "sent"))
	h.eventually("delivery during the grace period", 20*time.Second, func() bool { return rc.count() == 1 })
	d := rc.deliveries()[0]
	if n := len(strings.Fields(d.header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("%d signatures during the grace period, want 2: %q", n, d.header.Get("webhook-signature"))
	}
	verify(t, oldSecret, d)         // a receiver still on the old secret
	verify(t, rot.SigningSecret, d) // one already on the new

	time.Sleep(time.Until(rot.PreviousValidUntil) + 100*time.Millisecond)
	h.produceEvent(newEvent("after-grace", "org1", "sb1", "email", "sent"))
	h.eventually("delivery after the grace period", 20*time.Second, func() bool { return rc.count() == 2 })
	d = rc.deliveries()[1]
	if n := len(strings.Fields(d.header.Get("webhook-signature"))); n != 1 {
		t.Fatalf("%d signatures after the grace period, want 1", n)
	}
	verify(t, rot.SigningSecret, d)
	wh, _ := standardwebhooks.NewWebhook(oldSecret)
	if wh.Verify(d.body, d.header) == nil {
		t.Fatal("the old secret still verifies after the grace period")
	}
}
