package e2e

import (
	"net/http"
	"testing"
	"time"
)

// GET /v1/dlq: the statistics and dead letters that pass the filters, in
// feedbackctl dlq's shape, checked against the OpenAPI document; a filter
// that is not valid answers 400 naming it; an org token sees its own only.
func TestDeadLettersAPI(t *testing.T) {
	h := start(t, withAdminJWT)
	rc := newReceiver(t, func(int, delivery) int { return http.StatusBadRequest })
	h.createWebhook(webhookConfig("orgA", "sb1", rc.URL))
	h.createWebhook(webhookConfig("orgB", "sb2", rc.URL))
	h.produceEvent(newEvent("a1", "orgA", "sb1", "email", "bounce"))
	h.produceEvent(newEvent("a2", "orgA", "sb1", "sms", "sent"))
	h.produceEvent(newEvent("b1", "orgB", "sb2", "email", "bounce"))
	h.dlq(3)

	type listAnswer struct {
		Stats struct {
			Total    int            `json:"total"`
			ByReason map[string]int `json:"byReason"`
			ByOrg    map[string]int `json:"byOrg"`
		} `json:"stats"`
		DeadLetters []struct {
			DeadLetter string `json:"deadLetter"`
			Org        string `json:"org"`
			Channel    string `json:"channel"`
			Reason     string `json:"reason"`
			LastStatus int    `json:"lastStatus"`
			Value      struct {
				RequestID string `json:"requestId"`
			} `json:"value"`
		} `json:"deadLetters"`
		Truncated bool `json:"truncated"`
	}
	var all listAnswer
	if code := h.call("GET", "/v1/dlq", nil, &all); code != http.StatusOK || all.Stats.Total != 3 || len(all.DeadLetters) != 3 ||
		all.Stats.ByReason["rejected"] != 3 || all.DeadLetters[0].LastStatus != 400 {
		t.Fatalf("all: %d %+v", code, all)
	}
	var some listAnswer
	if code := h.call("GET", "/v1/dlq?org=orgA&channel=sms&since=1h&limit=1", nil, &some); code != http.StatusOK ||
		some.Stats.Total != 1 || some.DeadLetters[0].Value.RequestID != "req-a2" || some.Truncated {
		t.Fatalf("filtered: %d %+v", code, some)
	}
	var one listAnswer
	if h.call("GET", "/v1/dlq?deadLetter="+all.DeadLetters[1].DeadLetter, nil, &one); len(one.DeadLetters) != 1 ||
		one.DeadLetters[0].DeadLetter != all.DeadLetters[1].DeadLetter {
		t.Fatalf("one: %+v", one)
	}
	var cut listAnswer
	if h.call("GET", "/v1/dlq?limit=2", nil, &cut); !cut.Truncated || len(cut.DeadLetters) != 2 || cut.Stats.Total != 3 {
		t.Fatalf("limit 2: %+v", cut)
	}

	for _, tc := range []struct{ query, field string }{
		{"reason=lost", "reason"}, {"channel=fax", "channel"}, {"since=yesterday", "since"},
		{"since=1h&until=2h", "since"}, {"limit=0", "limit"}, {"limit=501", "limit"},
	} {
		var e struct{ Error struct{ Field string } }
		if code := h.callInvalid("GET", "/v1/dlq?"+tc.query, nil, &e); code != http.StatusBadRequest || e.Error.Field != tc.field {
			t.Errorf("%s: %d field %q, want 400 %s", tc.query, code, e.Error.Field, tc.field)
		}
	}

	orgA := adminJWT(t, "org:orgA", time.Hour, adminJWTSecret)
	var mine listAnswer
	if code := h.callAs(orgA, "GET", "/v1/dlq", nil, &mine); code != http.StatusOK || mine.Stats.Total != 2 || mine.Stats.ByOrg["orgB"] != 0 {
		t.Fatalf("org:orgA: %d %+v", code, mine)
	}
	if code := h.callAs(orgA, "GET", "/v1/dlq?org=orgB", nil, nil); code != http.StatusForbidden {
		t.Errorf("org:orgA asking for orgB: %d", code)
	}
	if code := h.callAs("wrong", "GET", "/v1/dlq", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", code)
	}
}
