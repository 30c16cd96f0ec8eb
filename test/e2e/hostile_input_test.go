package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// The webhook-id record header of an input record (a replay sets it) is
// held to the eventId rule: a huge one, one with CR/LF and one with
// terminal escapes are dead-lettered as invalid_event without an attempt,
// under a derived id; a valid one is the webhook-id. feedbackctl shows the
// dead letters with their original headers escaped.
func TestWebhookIDHeaderIsChecked(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	bad := map[string]string{
		"huge":    strings.Repeat("a", 100<<10),
		"crlf":    "evt-1\r\nX-Injected: yes",
		"escapes": "evt\x1b]0;owned\x07\x1b[2J",
		"space":   "evt 1",
	}
	for name, id := range bad {
		e := newEvent("", "org1", "sb1", "email", "sent")
		e["requestId"] = "bad-" + name
		h.produceWithHeaders("feedback.sent", mustJSON(t, e), kgo.RecordHeader{Key: "webhook-id", Value: []byte(id)})
	}
	good := newEvent("", "org1", "sb1", "email", "sent")
	h.produceWithHeaders("feedback.sent", mustJSON(t, good), kgo.RecordHeader{Key: "webhook-id", Value: []byte("msg_replayed-1")})

	recs := h.dlq(len(bad))
	if len(recs) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(recs), len(bad))
	}
	for _, r := range recs {
		if r.Reason != dlq.ReasonInvalidEvent || r.Attempts != 0 || r.LastError != "webhook_id" || !strings.HasPrefix(r.WebhookID, "msg_") {
			t.Errorf("dead letter %s: reason %q attempts %d error %q webhook-id %.40q", r.Coordinates(), r.Reason, r.Attempts, r.LastError, r.WebhookID)
		}
	}
	h.eventually("the event with a valid header id delivered", 10*time.Second, func() bool { return rc.count() == 1 })
	if id := rc.deliveries()[0].header.Get("webhook-id"); id != "msg_replayed-1" {
		t.Errorf("delivered with webhook-id %q, want the header's", id)
	}
	if n := h.metric("feedbackd_events_invalid_total", map[string]string{"reason": "webhook_id"}); n != float64(len(bad)) {
		t.Errorf("events_invalid_total{reason=webhook_id} = %v, want %d", n, len(bad))
	}
	time.Sleep(500 * time.Millisecond) // nothing else arrives
	if n := rc.count(); n != 1 {
		t.Errorf("the receiver got %d requests, want 1", n)
	}

	out, code := h.ctl("dlq", "list", "--limit", "0")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07\r") {
		t.Errorf("dlq list (exit %d) printed control characters:\n%q", code, out)
	}
	out, code = h.ctl("dlq", "list", "--limit", "0", "-o", "json")
	var n int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct{ Headers map[string]string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Headers["webhook-id"] != "" {
			n++
		}
	}
	if code != 0 || n != len(bad) {
		t.Errorf("dlq list -o json (exit %d): %d records with a webhook-id header, want %d", code, n, len(bad))
	}
}

func (h *harness) produceWithHeaders(topic string, value []byte, headers ...kgo.RecordHeader) {
	h.t.Helper()
	if err := h.producer.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: value, Headers: headers}).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}
