package outcome

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/feedbackd/feedbackd/schemas"
)

// Every kind of record encodes to what schemas/outcome.schema.json allows.
func TestRecordsMatchTheSchema(t *testing.T) {
	schema, err := schemas.Compile(schemas.Outcome)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 10, 2, 0, 123e6, time.UTC)
	event := Record{Time: at, Instance: "host/1", WebhookID: "evt-1", EventID: "evt-1", RequestID: "r-1",
		Org: "orgA", Sandbox: "prod", Channel: "email", Status: "bounce", CampaignID: "c-1", Attempt: 1,
		Source: "feedback.bounce/0/42"}
	with := func(f func(*Record)) Record { r := event; f(&r); return r }
	for name, r := range map[string]Record{
		"attempt": with(func(r *Record) {
			r.Type, r.Outcome, r.HTTPCode, r.DurationMs = TypeAttempt, "retryable", 503, Millis(12345*time.Microsecond)
			r.ErrorClass, r.Response, r.ResponseTruncated = "http_503", `{"error":"busy"}`, true
		}),
		"no answer": with(func(r *Record) {
			r.Type, r.Outcome, r.DurationMs, r.ErrorClass = TypeAttempt, "error", Millis(time.Second), "timeout"
		}),
		"retried": with(func(r *Record) {
			r.Type, r.Outcome, r.RetryInMs, r.HTTPCode, r.ErrorClass = TypeOutcome, "retried", 5000, 503, "http_503"
		}),
		"invalid event": {Type: TypeOutcome, Time: at, Instance: "host/1", WebhookID: "feedback.sent-0-7",
			Outcome: "dead_lettered", Reason: "invalid_event", ErrorClass: "invalid_json", Source: "feedback.sent/0/7"},
		"exhausted": with(func(r *Record) { r.Type = TypeExhausted }),
		"disabled":  with(func(r *Record) { r.Type, r.DisabledReason = TypeEndpointDisabled, "endpoint answered 410 Gone" }),
		"failing":   with(func(r *Record) { r.Type = TypeEndpointFailing }),
		"recovered": with(func(r *Record) { r.Type = TypeEndpointRecovered }),
	} {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("%s: %s\n%v", name, b, err)
		}
		if name == "attempt" && !strings.Contains(string(b), `"time":"2026-12-02T10:02:00.123Z"`) {
			t.Errorf("time is not RFC 3339 with milliseconds: %s", b)
		}
	}
	if k := (&Record{Org: "orgA", Sandbox: "prod"}).Key(); string(k) != "orgA/prod" {
		t.Errorf("key %q", k)
	}
}
