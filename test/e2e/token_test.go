package e2e

import (
	"strings"
	"testing"
)

// feedbackctl token mints a token feedbackd accepts, scoped as asked.
func TestFeedbackctlMintsAdminTokens(t *testing.T) {
	h := start(t, withAdminJWT)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("orgA", "sb", rc.URL))
	h.createWebhook(webhookConfig("orgB", "sb", rc.URL))
	t.Setenv("FEEDBACKCTL_JWT_SECRET", adminJWTSecret)
	out, code := h.ctl("token", "--scope", "org:orgA", "--ttl", "1h", "--issuer", "ops")
	tok := strings.TrimSpace(out)
	if code != 0 || strings.Count(tok, ".") != 2 {
		t.Fatalf("token (exit %d): %q", code, out)
	}
	if code := h.callAs(tok, "GET", "/v1/webhooks/orgA/sb", nil, nil); code != 200 {
		t.Errorf("its own organisation: %d", code)
	}
	if code := h.callAs(tok, "GET", "/v1/webhooks/orgB/sb", nil, nil); code != 404 {
		t.Errorf("another organisation: %d, want 404", code)
	}
	for _, bad := range [][]string{{"--scope", "org:*"}, {"--scope", "everything"}, {"--ttl", "0s", "--scope", "admin"}} {
		if out, code := h.ctl(append([]string{"token"}, bad...)...); code == 0 {
			t.Errorf("token %v: exit 0: %s", bad, out)
		}
	}
	t.Setenv("FEEDBACKCTL_JWT_SECRET", "short")
	if out, code := h.ctl("token", "--scope", "admin"); code == 0 || strings.Contains(out, "short") {
		t.Errorf("a short secret: exit %d: %s", code, out)
	}
}
