package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
)

// Retry records the previous release wrote (Unix milliseconds and RFC 3339
// with nanoseconds) are still in the retry tiers after an upgrade: they are
// delivered when due, or dead-lettered with their history, as before.
func TestRetryRecordsOfThePreviousReleaseAreRead(t *testing.T) {
	h := start(t, nil) // schedule 1s, 1s: three attempts in all
	rc := newReceiver(t, func(_ int, d delivery) int {
		if d.header.Get("webhook-id") == "evt-old-broken" {
			return 500
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	first := time.Now().Add(-time.Minute).UTC()
	legacy := func(id string, attempts int) []kgo.RecordHeader {
		now := strconv.FormatInt(time.Now().UnixMilli(), 10)
		return []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("tp")},
			{Key: "webhook-id", Value: []byte(id)},
			{Key: "retry-attempts", Value: []byte(strconv.Itoa(attempts))},
			{Key: "retry-due-at", Value: []byte(now)},
			{Key: "retry-first-attempt-at", Value: []byte(first.Format(time.RFC3339Nano))},
			{Key: "retry-source", Value: []byte("feedback.sent/0/" + strconv.Itoa(attempts))},
			{Key: "retry-origin-time", Value: []byte(now)},
			{Key: "retry-last-status", Value: []byte("503")},
			{Key: "retry-last-error", Value: []byte("http_503")},
		}
	}
	h.produceWithHeaders("feedback.retry.1s", mustJSON(t, newEvent("evt-old-ok", "org1", "sb1", "email", "sent")), legacy("evt-old-ok", 1)...)
	h.produceWithHeaders("feedback.retry.1s", mustJSON(t, newEvent("evt-old-broken", "org1", "sb1", "email", "sent")), legacy("evt-old-broken", 2)...)

	recs := h.dlq(1)
	h.eventually("the due legacy retry delivered", 10*time.Second, func() bool {
		for _, d := range rc.deliveries() {
			if d.header.Get("webhook-id") == "evt-old-ok" {
				return true
			}
		}
		return false
	})
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want only evt-old-broken's", len(recs))
	}
	r := recs[0]
	if r.Err != nil || r.WebhookID != "evt-old-broken" || r.Reason != dlq.ReasonRetriesExhausted || r.Attempts != 3 ||
		!r.FirstAttemptAt.Equal(first.Truncate(time.Millisecond)) || r.Source != "feedback.sent/0/2" || header.Get(r.Headers, "traceparent") != "tp" {
		t.Fatalf("dead letter of a legacy retry record: %+v (%v), want 3 attempts since %s", r.DeadLetter, r.Err, first)
	}
}
