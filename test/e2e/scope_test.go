package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

const adminJWTSecret = "admin-jwt-hmac-secret-of-at-least-32-chars"

func adminJWT(t *testing.T, scope string, exp time.Duration, secret string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"scope": scope, "iss": "ops", "iat": time.Now().Unix(), "exp": time.Now().Add(exp).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withAdminJWT makes the admin API trust HS256 tokens signed with
// adminJWTSecret and issued by "ops" (adminJWT makes them).
func withAdminJWT(c *daemon.Config) {
	c.Admin.JWT.HMACSecret = adminJWTSecret
	c.Admin.JWT.Issuer = "ops"
}

// callAs makes an admin API request with the given bearer token.
func (h *harness) callAs(bearer, method, path string, body, out any) int {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.api+path, r)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

// An org:A token sees and changes org A's configs and dead letters only:
// org B's answer 404 as if they did not exist; wrong and expired tokens get
// 401.
func TestOrgScopedAdminTokens(t *testing.T) {
	h := start(t, withAdminJWT)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("orgA", "sb", rc.URL))
	h.createWebhook(webhookConfig("orgB", "sb", rc.URL))
	var bJob replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgB", "dryRun": true}, &bJob); code != 202 {
		t.Fatalf("admin starts a job of org B: %d", code)
	}
	a := adminJWT(t, "org:orgA", time.Hour, adminJWTSecret)

	var list struct {
		Webhooks []map[string]any `json:"webhooks"`
	}
	if code := h.callAs(a, "GET", "/v1/webhooks", nil, &list); code != 200 || len(list.Webhooks) != 1 || list.Webhooks[0]["imsOrg"] != "orgA" {
		t.Fatalf("org:A lists %d: %v", code, list.Webhooks)
	}
	list.Webhooks = nil
	if code := h.callAs(a, "GET", "/v1/webhooks?imsOrg=orgB", nil, &list); code != 200 || len(list.Webhooks) != 0 {
		t.Fatalf("org:A lists org B's: %d %v", code, list.Webhooks)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/webhooks/orgB/sb"},
		{"PUT", "/v1/webhooks/orgB/sb"},
		{"DELETE", "/v1/webhooks/orgB/sb"},
		{"POST", "/v1/webhooks/orgB/sb/test"},
		{"POST", "/v1/webhooks/orgB/sb/rotate-secret"},
		{"POST", "/v1/webhooks/orgB/sb/rotate-key"},
		{"PUT", "/v1/webhooks/orgB/sb/campaigns/c1"},
		{"DELETE", "/v1/webhooks/orgB/sb/campaigns/c1"},
		{"GET", "/v1/dlq/replays/" + bJob.ID},
	} {
		var body any
		if c.method == "PUT" && c.path == "/v1/webhooks/orgB/sb" {
			body = webhookConfig("orgB", "sb", "https://evil.example")
		}
		if code := h.callAs(a, c.method, c.path, body, nil); code != 404 {
			t.Errorf("org:A %s %s = %d, want 404", c.method, c.path, code)
		}
	}
	// The same requests for a config that does not exist answer the same.
	if code := h.callAs(a, "GET", "/v1/webhooks/orgC/sb", nil, nil); code != 404 {
		t.Errorf("unknown org: %d", code)
	}
	if code := h.callAs(a, "POST", "/v1/webhooks", webhookConfig("orgB", "sb2", rc.URL), nil); code != 403 {
		t.Errorf("org:A creates for org B: %d, want 403", code)
	}
	if code := h.callAs(a, "POST", "/v1/dlq/replays", map[string]any{"org": "orgB"}, nil); code != 403 {
		t.Errorf("org:A replays org B: %d, want 403", code)
	}
	var own replay.Progress
	if code := h.callAs(a, "POST", "/v1/dlq/replays", map[string]any{"dryRun": true}, &own); code != 202 || own.Request.Org != "orgA" {
		t.Errorf("org:A replay without org: %d %+v (must be narrowed to org A)", code, own)
	}
	// Org B is untouched; org A works.
	var b map[string]any
	if code := h.call("GET", "/v1/webhooks/orgB/sb", nil, &b); code != 200 || b["url"] != rc.URL {
		t.Fatalf("org B changed: %d %v", code, b)
	}
	if code := h.callAs(a, "POST", "/v1/webhooks/orgA/sb/test", nil, nil); code != 200 {
		t.Errorf("org:A tests its own: %d", code)
	}
	if code := h.callAs(adminJWT(t, "admin", time.Hour, adminJWTSecret), "GET", "/v1/webhooks/orgB/sb", nil, nil); code != 200 {
		t.Errorf("admin-scoped JWT: %d", code)
	}

	for name, tok := range map[string]string{
		"expired":      adminJWT(t, "org:orgA", -time.Hour, adminJWTSecret),
		"wrong key":    adminJWT(t, "admin", time.Hour, "some-other-secret-that-is-long-enough!!"),
		"no scope":     adminJWT(t, "read", time.Hour, adminJWTSecret),
		"garbage":      "not.a.token",
		"static wrong": "e2e-admin-token-000000000",
	} {
		if code := h.callAs(tok, "GET", "/v1/webhooks", nil, nil); code != 401 {
			t.Errorf("%s token: %d, want 401", name, code)
		}
	}
}
