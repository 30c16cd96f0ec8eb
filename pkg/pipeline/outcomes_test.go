package pipeline

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// Each outcome record is encoded on its own, keyed by its tenant, also
// when the records before it share their key, or none has one.
func TestEncodeOutcomesKeysAndValues(t *testing.T) {
	p := &Pipeline{opts: Options{OutcomesTopic: "feedback.outcomes"}, metrics: newMetrics(prometheus.NewRegistry(), nil)}
	at := time.Date(2026, 12, 8, 2, 30, 0, 0, time.UTC)
	rec := func(typ, org, sandbox string) outcome.Record {
		return outcome.Record{Type: typ, Time: at, Instance: "i", WebhookID: "w", Org: org, Sandbox: sandbox, Outcome: "success"}
	}
	for name, recs := range map[string][]outcome.Record{
		"one tenant":       {rec(outcome.TypeAttempt, "A", "prod"), rec(outcome.TypeOutcome, "A", "prod"), rec(outcome.TypeExhausted, "A", "prod")},
		"another sandbox":  {rec(outcome.TypeAttempt, "A", "prod"), rec(outcome.TypeOutcome, "A", "dev")},
		"then no tenant":   {rec(outcome.TypeAttempt, "A", "prod"), rec(outcome.TypeOutcome, "", "")},
		"no tenant, then":  {rec(outcome.TypeOutcome, "", ""), rec(outcome.TypeOutcome, "", ""), rec(outcome.TypeOutcome, "B", "prod")},
		"an empty sandbox": {rec(outcome.TypeAttempt, "A", ""), rec(outcome.TypeOutcome, "A", "")},
		// A record that does not encode (its year) is left out; the
		// others keep their keys.
		"one that fails": {rec(outcome.TypeAttempt, "B", "prod"), rec(outcome.TypeOutcome, "A", "prod"), rec(outcome.TypeOutcome, "A", "prod"),
			rec(outcome.TypeExhausted, "A", "prod"), rec(outcome.TypeOutcome, "", "")},
	} {
		if name == "one that fails" {
			recs[2].Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		krecs := p.encodeOutcomes(nil, recs)
		var encoded []outcome.Record
		for _, r := range recs {
			if _, err := r.Marshal(); err == nil {
				encoded = append(encoded, r)
			}
		}
		if len(krecs) != len(encoded) {
			t.Fatalf("%s: %d records, want %d", name, len(krecs), len(encoded))
		}
		recs = encoded
		for i, kr := range krecs {
			want, err := recs[i].Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kr.Value, want) || !bytes.Equal(recs[i].Value, want) || kr.Topic != "feedback.outcomes" {
				t.Errorf("%s, record %d: value %s (kept %s), want %s", name, i, kr.Value, recs[i].Value, want)
			}
			if k := recs[i].Key(); !bytes.Equal(kr.Key, k) || (k == nil) != (kr.Key == nil) {
				t.Errorf("%s, record %d: key %q, want %q", name, i, kr.Key, k)
			}
		}
	}
}

// BenchmarkEncodeOutcomes encodes a delivered job's records: its attempt
// and its outcome.
func BenchmarkEncodeOutcomes(b *testing.B) {
	p := &Pipeline{opts: Options{OutcomesTopic: "feedback.outcomes"}, metrics: newMetrics(prometheus.NewRegistry(), nil)}
	r := outcome.Record{Type: outcome.TypeAttempt, Time: time.Now().UTC(), Instance: "host/1", WebhookID: "evt-0123456789", EventID: "evt-0123456789",
		RequestID: "req-0123456789", Org: "org-17", Sandbox: "prod", Channel: "email", Status: "sent", CampaignID: "c-1",
		Outcome: "success", Attempt: 1, HTTPCode: 200, DurationMs: outcome.Millis(1234 * time.Microsecond), Response: "ok",
		Source: "feedback.sent/3/123456"}
	o := r
	o.Type, o.DurationMs, o.Response = outcome.TypeOutcome, nil, ""
	var krecs [2]kgo.Record
	b.ReportAllocs()
	for b.Loop() {
		recs := [2]outcome.Record{r, o}
		p.encodeOutcomes(krecs[:0], recs[:])
	}
}
