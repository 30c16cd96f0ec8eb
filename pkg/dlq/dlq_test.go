package dlq

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
)

func TestToKafkaKeepsOriginalAndRoundTrips(t *testing.T) {
	orig := &kgo.Record{
		Key: []byte("org/sb"), Value: []byte(`{"x":1}`),
		Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("t")}, {Key: "retry-attempts", Value: []byte("3")}, {Key: "webhook-id", Value: []byte("old")},
			{Key: "dlq-reason", Value: []byte("rejected")}, {Key: "replay-count", Value: []byte("1")},
		},
	}
	e := header.DeadLetter{
		Reason: ReasonRetriesExhausted, WebhookID: "msg_1", Attempts: 4, LastStatus: 503, LastError: "http_503",
		FirstAttemptAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), FailedAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC),
		Source: header.Source("feedback.sent", 2, 7),
	}
	for _, tc := range []struct {
		name    string
		omitted int
	}{{"with its value", 0}, {"value omitted", len(orig.Value)}} {
		t.Run(tc.name, func(t *testing.T) {
			e := e
			e.ValueOmitted = tc.omitted
			r := ToKafka("feedback.dlq", e, orig)
			wantValue := orig.Value
			if tc.omitted > 0 {
				wantValue = nil
			}
			if r.Topic != "feedback.dlq" || !bytes.Equal(r.Key, orig.Key) || !bytes.Equal(r.Value, wantValue) {
				t.Fatalf("record = %+v", r)
			}
			counts := map[string]int{}
			for _, h := range r.Headers {
				counts[h.Key]++
			}
			if counts["traceparent"] != 1 || counts["replay-count"] != 1 || counts["retry-attempts"] != 0 || counts["webhook-id"] != 1 || counts["dlq-reason"] != 1 {
				t.Fatalf("headers = %v", counts)
			}
			got, err := header.ParseDeadLetter(r.Headers)
			if err != nil || got != e {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, e)
			}
		})
	}
}
