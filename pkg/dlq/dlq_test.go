package dlq

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRecordKeepsOriginalAndRoundTrips(t *testing.T) {
	orig := &kgo.Record{
		Key: []byte("org/sb"), Value: []byte(`{"x":1}`),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("t")}, {Key: "retry-attempts", Value: []byte("3")}, {Key: "webhook-id", Value: []byte("old")}},
	}
	e := Entry{
		Reason: ReasonRetriesExhausted, WebhookID: "msg_1", Attempts: 4, LastStatus: 503, LastError: "http_503",
		FirstAttemptAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), FailedAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC),
		Source: Source("feedback.sent", 2, 7),
	}
	r := e.Record("feedback.dlq", orig)
	if r.Topic != "feedback.dlq" || !bytes.Equal(r.Key, orig.Key) || !bytes.Equal(r.Value, orig.Value) {
		t.Fatalf("record = %+v", r)
	}
	counts := map[string]int{}
	for _, h := range r.Headers {
		counts[h.Key]++
	}
	if counts["traceparent"] != 1 || counts["retry-attempts"] != 0 || counts["webhook-id"] != 1 {
		t.Fatalf("headers = %v", counts)
	}
	for _, k := range []string{HeaderReason, HeaderWebhookID, HeaderAttempts, HeaderLastStatus, HeaderLastError, HeaderFirstAttemptAt, HeaderFailedAt, HeaderSource} {
		if counts[k] != 1 {
			t.Errorf("header %s missing", k)
		}
	}
	got, err := ParseEntry(r.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if got != e {
		t.Fatalf("got %+v\nwant %+v", got, e)
	}
}

func TestParseEntryRejectsOthers(t *testing.T) {
	if _, err := ParseEntry([]kgo.RecordHeader{{Key: "x", Value: []byte("y")}}); err == nil {
		t.Fatal("a record without dlq-reason parsed")
	}
}
