package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// tokenServer is a tenant's OAuth2 token endpoint (client credentials).
type tokenServer struct {
	*httptest.Server
	requests  atomic.Int32
	lifetime  atomic.Int64 // seconds
	failing   atomic.Bool
	mu        sync.Mutex
	issued    map[string]bool // valid tokens
	lastForm  map[string]string
	lastBasic [2]string
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{issued: map[string]bool{}}
	ts.lifetime.Store(3600)
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if ts.failing.Load() {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		id, secret, _ := r.BasicAuth()
		_ = r.ParseForm()
		ts.mu.Lock()
		ts.lastBasic = [2]string{id, secret}
		ts.lastForm = map[string]string{"grant_type": r.Form.Get("grant_type"), "scope": r.Form.Get("scope"), "audience": r.Form.Get("audience")}
		tok := fmt.Sprintf("tok-%d", n)
		ts.issued[tok] = true
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": ts.lifetime.Load()})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) valid(authz string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued[strings.TrimPrefix(authz, "Bearer ")]
}

func (ts *tokenServer) revoke(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.issued, tok)
}

func TestOAuth2ClientCredentials(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Retry.Schedule = []time.Duration{time.Second} })
	ts := newTokenServer(t)
	var tokensSeen sync.Map
	rc := newReceiver(t, func(_ int, d delivery) int {
		authz := d.header.Get("Authorization")
		tokensSeen.Store(authz, true)
		if !ts.valid(authz) {
			return http.StatusUnauthorized
		}
		return 200
	})
	cfg := webhookConfig("org1", "sb1", rc.URL)
	cfg["auth"] = map[string]any{"type": "oauth2", "tokenUrl": ts.URL + "/token", "clientId": "feedbackd-client",
		"clientSecret": "client-secret-do-not-leak", "scope": "webhooks:write", "audience": "https://hooks.example.com"}
	var created map[string]any
	if code := h.call("POST", "/v1/webhooks", cfg, &created); code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	if auth := created["auth"].(map[string]any); auth["clientSecret"] != nil {
		t.Fatal("the client secret was returned")
	}

	// Many deliveries, one token.
	for i := range 20 {
		h.produceEvent(newEvent(fmt.Sprintf("o-%d", i), "org1", "sb1", "email", "sent"))
	}
	h.eventually("20 deliveries", 20*time.Second, func() bool { return rc.count() == 20 })
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for 20 deliveries, want 1", n)
	}
	ts.mu.Lock()
	form, basic := ts.lastForm, ts.lastBasic
	ts.mu.Unlock()
	if form["grant_type"] != "client_credentials" || form["scope"] != "webhooks:write" || form["audience"] != "https://hooks.example.com" ||
		basic != [2]string{"feedbackd-client", "client-secret-do-not-leak"} {
		t.Fatalf("token request: form %v, basic auth %v", form, basic)
	}

	// A 401: the token is replaced once, within the same attempt.
	ts.revoke("tok-1")
	h.produceEvent(newEvent("after-revoke", "org1", "sb1", "email", "sent"))
	h.eventually("delivered with a new token", 20*time.Second, func() bool { return rc.countFor("after-revoke") == 2 })
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("%d token requests after a 401, want 2", n)
	}
	if n := h.metric("feedbackd_delivery_attempts_total", map[string]string{"outcome": "success"}); n != 21 {
		t.Fatalf("successful attempts %v: the 401 must be retried within the attempt", n)
	}

	// Expiry: a token about to expire is replaced before use.
	ts.lifetime.Store(6) // refreshed 5 s before it ends: at once
	ts.revoke("tok-2")
	h.produceEvent(newEvent("short-1", "org1", "sb1", "email", "sent")) // 401 -> tok-3 (6 s)
	h.eventually("short-1", 20*time.Second, func() bool { return rc.countFor("short-1") == 2 })
	before := ts.requests.Load()
	time.Sleep(1100 * time.Millisecond)
	h.produceEvent(newEvent("short-2", "org1", "sb1", "email", "sent"))
	h.eventually("short-2", 20*time.Second, func() bool { return rc.countFor("short-2") == 1 })
	if n := ts.requests.Load(); n != before+1 {
		t.Fatalf("token requests %d -> %d: a token within its refresh margin must be replaced", before, n)
	}

	// A failing token endpoint is a retryable failure, classified.
	ts.failing.Store(true)
	ts.revoke(fmt.Sprintf("tok-%d", ts.requests.Load()))
	ts.lifetime.Store(3600)
	h.produceEvent(newEvent("no-token", "org1", "sb1", "email", "sent"))
	recs := h.dlq(1)
	if r := recs[0]; r.Reason != dlq.ReasonRetriesExhausted || r.LastError != "oauth2_token" || r.Attempts != 2 {
		t.Fatalf("dead letter: %+v", r.DeadLetter)
	}
	if n := h.metric("feedbackd_oauth2_token_requests_total", map[string]string{"result": "error"}); n < 2 {
		t.Fatalf("token errors counted: %v", n)
	}
}
