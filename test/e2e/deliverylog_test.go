package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/outcome"
)

type logPage struct {
	Records    []outcome.Record `json:"records"`
	NextCursor string           `json:"nextCursor"`
}

type logMessage struct {
	WebhookID string           `json:"webhookId"`
	Records   []outcome.Record `json:"records"`
	Final     *outcome.Record  `json:"final"`
}

// A delivered event, a 503-then-200 event, a rejected one and one that
// used up its retries each show every attempt and outcome, in order, in
// /attempts (newest first, through pages) and /messages/{id} (oldest
// first, with the final outcome), with outcomes.enabled false: the log does
// not need the topic. Answers are cut at outcomes.response_bytes; /health
// counts them; an org:A token gets 404 for org B's log, and everyone for a
// config that does not exist; bad parameters are a 400 naming the field;
// feedbackctl prints the same.
func TestDeliveryLogShowsEveryAttempt(t *testing.T) {
	h := start(t, func(c *daemon.Config) {
		withAdminJWT(c)
		c.Outcomes.Enabled, c.Outcomes.ResponseBytes = false, 16
	})
	var mu sync.Mutex
	seen := map[string]int{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		switch {
		case id == "log-retry" && n == 1, id == "log-exhaust":
			w.WriteHeader(503)
			_, _ = w.Write([]byte("try again later, please: we are busy"))
		case id == "log-reject":
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"bad"}`))
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer rc.Close()
	h.createWebhook(webhookConfig("orgA", "sb1", rc.URL))
	h.createWebhook(webhookConfig("orgB", "sb1", rc.URL))
	for _, id := range []string{"log-ok", "log-retry", "log-reject", "log-exhaust"} {
		h.produceEvent(newEvent(id, "orgA", "sb1", "email", "bounce"))
	}
	h.produceEvent(newEvent("log-b", "orgB", "sb1", "email", "sent"))

	type step struct{ typ, outcome string }
	want := map[string][]step{
		"log-ok":     {{outcome.TypeAttempt, "success"}, {outcome.TypeOutcome, "delivered"}},
		"log-retry":  {{outcome.TypeAttempt, "retryable"}, {outcome.TypeOutcome, "retried"}, {outcome.TypeAttempt, "success"}, {outcome.TypeOutcome, "delivered"}},
		"log-reject": {{outcome.TypeAttempt, "rejected"}, {outcome.TypeOutcome, "dead_lettered"}},
		"log-exhaust": {{outcome.TypeAttempt, "retryable"}, {outcome.TypeOutcome, "retried"}, {outcome.TypeAttempt, "retryable"},
			{outcome.TypeOutcome, "retried"}, {outcome.TypeAttempt, "retryable"}, {outcome.TypeOutcome, "dead_lettered"}, {outcome.TypeExhausted, ""}},
	}
	total := 0
	for _, s := range want {
		total += len(s)
	}
	var all logPage
	h.eventually("every record of org A in the delivery log", 60*time.Second, func() bool {
		all = logPage{}
		return h.call("GET", "/v1/webhooks/orgA/sb1/attempts?limit=500", nil, &all) == 200 && len(all.Records) >= total
	})
	if len(all.Records) != total || all.NextCursor != "" {
		t.Fatalf("%d records (cursor %q), want %d", len(all.Records), all.NextCursor, total)
	}
	// Newest first in the order the records were written: two events'
	// records made a fraction of a millisecond apart by different slots
	// may be written the other way round (each event's own records are in
	// order, checked below through /messages).
	const writeSkew = 50 * time.Millisecond
	for i := 1; i < len(all.Records); i++ {
		if all.Records[i].Time.After(all.Records[i-1].Time.Add(writeSkew)) {
			t.Errorf("/attempts not newest first at %d: %s after %s", i, all.Records[i].Time, all.Records[i-1].Time)
		}
	}

	for id, steps := range want {
		var m logMessage
		if code := h.call("GET", "/v1/webhooks/orgA/sb1/messages/"+id, nil, &m); code != 200 {
			t.Fatalf("messages/%s: %d", id, code)
		}
		var filtered logPage
		h.call("GET", "/v1/webhooks/orgA/sb1/attempts?webhookId="+id, nil, &filtered)
		if len(m.Records) != len(steps) || len(filtered.Records) != len(steps) {
			t.Errorf("%s: %d records in messages, %d in attempts, want %d: %+v", id, len(m.Records), len(filtered.Records), len(steps), m.Records)
			continue
		}
		for i, s := range steps {
			r := m.Records[i]
			if r.Type != s.typ || r.Outcome != s.outcome {
				t.Errorf("%s record %d: %s %s, want %s %s", id, i, r.Type, r.Outcome, s.typ, s.outcome)
			}
			if back := filtered.Records[len(steps)-1-i]; back.Type != r.Type || back.Outcome != r.Outcome || !back.Time.Equal(r.Time) {
				t.Errorf("%s: /attempts record %d is %s %s, not the reverse of /messages", id, len(steps)-1-i, back.Type, back.Outcome)
			}
			if r.Org != "orgA" || r.Sandbox != "sb1" || r.EventID != id || r.RequestID != "req-"+id || r.Status != "bounce" {
				t.Errorf("%s record %d lacks identifiers: %+v", id, i, r)
			}
		}
		final := steps[len(steps)-1]
		if final.typ == outcome.TypeExhausted {
			final = steps[len(steps)-2]
		}
		if m.Final == nil || m.Final.Outcome != final.outcome {
			t.Errorf("%s: final %+v, want %s", id, m.Final, final.outcome)
		}
	}
	var retry logMessage
	h.call("GET", "/v1/webhooks/orgA/sb1/messages/log-retry", nil, &retry)
	if r := retry.Records[0]; r.HTTPCode != 503 || r.Attempt != 1 || r.ErrorClass != "http_503" || r.Response != "try again later," || !r.ResponseTruncated {
		t.Errorf("first attempt of log-retry: %+v (answer cut at 16 bytes)", r)
	}
	if r := retry.Records[2]; r.Attempt != 2 || r.HTTPCode != 200 || r.Response != "ok" || r.ResponseTruncated || r.DurationMs == nil {
		t.Errorf("second attempt of log-retry: %+v", r)
	}

	// Filters and pages.
	var attempts logPage
	h.call("GET", "/v1/webhooks/orgA/sb1/attempts?type=message.attempt&outcome=retryable&httpStatus=503", nil, &attempts)
	if len(attempts.Records) != 4 {
		t.Errorf("retryable 503 attempts: %d, want 4", len(attempts.Records))
	}
	var paged []outcome.Record
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > total {
			t.Fatal("pages do not end")
		}
		var p logPage
		q := url.Values{"limit": {"4"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if code := h.call("GET", "/v1/webhooks/orgA/sb1/attempts?"+q.Encode(), nil, &p); code != 200 {
			t.Fatalf("page %d: %d", pages, code)
		}
		paged = append(paged, p.Records...)
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(paged) != total {
		t.Errorf("pages of 4 hold %d records, want %d", len(paged), total)
	}
	for i := range min(len(paged), total) {
		if paged[i].WebhookID != all.Records[i].WebhookID || paged[i].Type != all.Records[i].Type || !paged[i].Time.Equal(all.Records[i].Time) {
			t.Errorf("paged record %d differs from the single page's", i)
		}
	}

	// Health.
	var health struct {
		Enabled  bool `json:"enabled"`
		Breaker  *struct{ State string }
		LastHour struct{ Attempts, Outcomes, Events map[string]int64 }
		LastDay  struct{ Attempts, Outcomes map[string]int64 }
		Rate     struct{ LastHour *float64 } `json:"successRate"`
		Duration struct {
			Samples int
			P50     *float64
		} `json:"attemptDurationMs"`
		LastSuccess *time.Time `json:"lastSuccess"`
		LastFailure *struct{ Outcome string }
	}
	if code := h.call("GET", "/v1/webhooks/orgA/sb1/health", nil, &health); code != 200 {
		t.Fatalf("health: %d", code)
	}
	a, o := health.LastHour.Attempts, health.LastHour.Outcomes
	if a["success"] != 2 || a["retryable"] != 4 || a["rejected"] != 1 || o["delivered"] != 2 || o["retried"] != 3 ||
		o["dead_lettered"] != 2 || health.LastHour.Events["message.exhausted"] != 1 || health.LastDay.Attempts["success"] != 2 {
		t.Errorf("health counts: %+v", health.LastHour)
	}
	if r := health.Rate.LastHour; r == nil || *r < 0.28 || *r > 0.29 { // 2 of 7
		t.Errorf("success rate %v, want 2/7", r)
	}
	if !health.Enabled || health.Breaker == nil || health.Breaker.State != "closed" || health.Duration.Samples != 7 ||
		health.Duration.P50 == nil || health.LastSuccess == nil || health.LastFailure == nil {
		t.Errorf("health: %+v", health)
	}
	if h.metric("feedbackd_delivery_log_writes_total", nil) < float64(total) || h.metric("feedbackd_delivery_log_write_errors_total", nil) != 0 {
		t.Error("delivery log metrics do not count the writes")
	}

	// Tenants.
	tokA := adminJWT(t, "org:orgA", time.Hour, adminJWTSecret)
	for _, path := range []string{"/v1/webhooks/orgB/sb1/attempts", "/v1/webhooks/orgB/sb1/messages/log-b", "/v1/webhooks/orgB/sb1/health"} {
		if code := h.callAs(tokA, "GET", path, nil, nil); code != 404 {
			t.Errorf("org:A GET %s = %d, want 404", path, code)
		}
	}
	var own logPage
	if code := h.callAs(tokA, "GET", "/v1/webhooks/orgA/sb1/attempts", nil, &own); code != 200 || len(own.Records) != total {
		t.Errorf("org:A reads its own log: %d, %d records", code, len(own.Records))
	}
	var b logMessage
	h.eventually("org B's event in its own log", 10*time.Second, func() bool {
		return h.call("GET", "/v1/webhooks/orgB/sb1/messages/log-b", nil, &b) == 200 && b.Final != nil
	})
	if code := h.call("GET", "/v1/webhooks/orgA/sb1/messages/log-b", nil, nil); code != 404 {
		t.Errorf("org B's event in org A's log: %d", code)
	}

	// A config that does not exist: 404, the same answer on every route,
	// and feedbackctl says so and fails.
	for _, path := range []string{"/v1/webhooks/orgA/nosuch/attempts", "/v1/webhooks/orgA/nosuch/messages/log-ok", "/v1/webhooks/orgA/nosuch/health"} {
		var e struct {
			Error struct{ Code, Message string }
		}
		if code := h.call("GET", path, nil, &e); code != 404 || e.Error.Code != "not_found" || e.Error.Message != "no webhook config for this organisation and sandbox" {
			t.Errorf("GET %s = %d %+v, want 404 no webhook config", path, code, e.Error)
		}
	}
	if out, code := h.ctl("webhooks", "attempts", "orgA", "nosuch"); code == 0 || !strings.Contains(out, "no webhook config for this organisation and sandbox") {
		t.Errorf("feedbackctl webhooks attempts of no config (exit %d):\n%s", code, out)
	}

	// Bad input.
	for query, field := range map[string]string{
		"org=orgB":       "org",
		"cursor=!!":      "cursor",
		"cursor=MTIz":    "cursor", // base64 of "123": not a stream id
		"limit=0":        "limit",
		"limit=501":      "limit",
		"httpStatus=5xx": "httpStatus",
		"outcome=fine":   "outcome",
		"since=2026-12-01T11:00:00Z&until=2026-12-01T10:00:00Z": "since",
		"until=yesterday":           "until",
		"status=sent&status=bounce": "status",
	} {
		var e struct {
			Error struct{ Code, Field string }
		}
		if code := h.callInvalid("GET", "/v1/webhooks/orgA/sb1/attempts?"+query, nil, &e); code != 400 || e.Error.Field != field {
			t.Errorf("?%s: %d field %q, want 400 naming %s", query, code, e.Error.Field, field)
		}
	}

	// feedbackctl.
	out, code := h.ctl("webhooks", "attempts", "orgA", "sb1", "--webhook-id", "log-retry", "--since", "1h")
	if code != 0 || !strings.Contains(out, "WEBHOOK-ID") || strings.Count(out, "log-retry") != 4 || !strings.Contains(out, "try again later,...") {
		t.Errorf("feedbackctl webhooks attempts (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("messages", "show", "orgA", "sb1", "log-exhaust")
	if code != 0 || !strings.Contains(out, "log-exhaust: dead_lettered (retries_exhausted) after 3 attempts") {
		t.Errorf("feedbackctl messages show (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("webhooks", "health", "orgA", "sb1")
	if code != 0 || !strings.Contains(out, "28.6% last hour") || !strings.Contains(out, "failures in a row") {
		t.Errorf("feedbackctl webhooks health (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("messages", "show", "orgA", "sb1", "log-ok", "--json")
	if code != 0 || !strings.Contains(out, `"final": {`) {
		t.Errorf("feedbackctl messages show --json (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("webhooks", "attempts", "orgA", "sb1", "--since", "yesterday")
	if code == 0 || !strings.Contains(out, "--since") || !strings.Contains(out, "an RFC 3339 time or a duration ago (e.g. 1h)") {
		t.Errorf("feedbackctl webhooks attempts --since yesterday (exit %d):\n%s", code, out)
	}
	out, code = h.ctlInvalid("webhooks", "attempts", "orgA", "sb1", "--limit", "0")
	if code == 0 || !strings.Contains(out, "--limit") {
		t.Errorf("feedbackctl webhooks attempts --limit 0 (exit %d):\n%s", code, out)
	}
}

// Without a delivery log the routes answer 501.
func TestDeliveryLogOff(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.DeliveryLog.Enabled = false })
	h.createWebhook(webhookConfig("orgA", "sb1", "http://127.0.0.1:1/x"))
	for _, path := range []string{"/v1/webhooks/orgA/sb1/attempts", "/v1/webhooks/orgA/sb1/messages/x", "/v1/webhooks/orgA/sb1/health"} {
		if code := h.call("GET", path, nil, nil); code != 501 {
			t.Errorf("GET %s = %d, want 501", path, code)
		}
	}
}
