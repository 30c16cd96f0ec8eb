package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/offsets"
)

func TestFailingReason(t *testing.T) {
	since := time.Date(2026, 11, 27, 10, 2, 3, 456e6, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{120 * time.Hour, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 120h)"},
		{90 * time.Minute, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 1h30m)"},
		{3 * time.Second, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 3s)"},
		{time.Hour + 30*time.Second, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 1h0m30s)"},
	} {
		if got := failingReason(since, tc.after); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.after, got, tc.want)
		}
	}
}

// clock is a FailClock that counts what it is told and answers disable.
type clock struct {
	successes, failures int
	disable             bool
}

var clockSince = time.Date(2026, 11, 27, 9, 2, 3, 0, time.UTC)

func (c *clock) Success(string, string, time.Time) { c.successes++ }
func (c *clock) Failure(context.Context, string, string, time.Time, time.Time) (time.Time, bool) {
	c.failures++
	return clockSince, c.disable
}
func (*clock) After() time.Duration { return 120 * time.Hour }

// What process tells the failure clock, and what becomes of the event
// when the clock says the config has failed for long enough.
func TestProcessTellsTheFailureClock(t *testing.T) {
	open := &admitter{admit: func() admission.Decision {
		return admission.Decision{Answer: admission.Open, Until: time.Now().Add(30 * time.Second)}
	}}
	busy := &admitter{admit: func() admission.Decision { return admission.Decision{Answer: admission.Busy} }, slow: true}
	const failing = "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 120h)"
	cases := []struct {
		name                string
		send                sendFunc
		admission           *admitter
		disable             bool
		successes, failures int
		kind                Kind
		reason              string
		disabled            string // the job's disabledReason
	}{
		{name: "2xx", send: answer(deliver.Delivered, 200, ""), successes: 1, kind: Delivered},
		{name: "5xx", send: answer(deliver.Retry, 503, "http_503"), failures: 1, kind: Retried},
		{name: "4xx", send: answer(deliver.Reject, 400, "http_400"), failures: 1, kind: DeadLettered, reason: dlq.ReasonRejected},
		{name: "address refused", send: answer(deliver.Unreachable, 0, "address_refused"), failures: 1,
			kind: DeadLettered, reason: dlq.ReasonEndpointInvalid},
		{name: "breaker open", admission: open, failures: 1, kind: Deferred, reason: deferCircuitOpen},
		{name: "busy: not a failure", admission: busy, kind: Deferred, reason: deferEndpointBusy},
		{name: "cut short: nothing", send: answer(deliver.Aborted, 0, "canceled"), kind: Abandoned},
		{name: "410: disabled at once", send: answer(deliver.Gone, 410, "http_410"), disable: true,
			kind: DeadLettered, reason: dlq.ReasonRejected, disabled: goneReason},
		{name: "5xx, failing too long", send: answer(deliver.Retry, 503, "http_503"), disable: true, failures: 1,
			kind: DeadLettered, reason: dlq.ReasonEndpointDisabled, disabled: failing},
		{name: "4xx, failing too long", send: answer(deliver.Reject, 400, "http_400"), disable: true, failures: 1,
			kind: DeadLettered, reason: dlq.ReasonEndpointDisabled, disabled: failing},
		{name: "breaker open, failing too long", admission: open, disable: true, failures: 1,
			kind: DeadLettered, reason: dlq.ReasonEndpointDisabled, disabled: failing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fc := &clock{disable: c.disable}
			if c.send == nil {
				// t.Error: the fake answers on a goroutine of its own.
				c.send = func() deliver.Result { t.Error("an attempt was made"); return deliver.Result{} }
			}
			p := stagesOnly(Options{Policy: testPolicy, ClaimTTL: time.Minute, FailClock: fc}, target(nil), c.send)
			if c.admission != nil {
				p.opts.Admission = c.admission
			}
			rec := &kgo.Record{Topic: "feedback.bounce", Value: eventWith("bounce"), Timestamp: time.Now()}
			j := &job{rec: rec, part: &offsets.Partition{Topic: rec.Topic}}
			s := p.slots.acquire(t.Context())
			defer s.done()

			o := processed(t.Context(), p, j, s)
			if o.Kind != c.kind || o.Reason != c.reason {
				t.Fatalf("outcome %v %q, want %v %q", o.Kind, o.Reason, c.kind, c.reason)
			}
			if fc.successes != c.successes || fc.failures != c.failures {
				t.Errorf("clock told %d successes, %d failures; want %d, %d", fc.successes, fc.failures, c.successes, c.failures)
			}
			got := ""
			if j.disable != nil {
				got = j.disable.reason
			}
			if got != c.disabled {
				t.Errorf("job disables its config with %q, want %q", got, c.disabled)
			}
			if c.send != nil && c.kind == DeadLettered && o.Attempt == nil && c.admission == nil {
				t.Error("the attempt that tripped the clock is not kept for its outcome record")
			}
		})
	}
}

// configsNoDisable is a config store that cannot disable a config.
type configsNoDisable struct{ configsFunc }

func (configsNoDisable) Disable(context.Context, string, string, string) error {
	return errors.New("redis: connection refused")
}

// A config the store cannot disable is not left with an endpoint_disabled
// dead letter while it stays enabled: the outcome the job had before the
// clock tripped is carried out instead, and no endpoint.disabled record is
// due.
func TestUndisabledConfigKeepsTheEarlierOutcome(t *testing.T) {
	for _, tc := range []struct {
		name    string
		configs Configs
		want    *Outcome // nil: the dead letter stands
	}{
		{"disabled", target(nil), nil},
		{"store fails", configsNoDisable{target(nil)}, &Outcome{Kind: Retried}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{
				opts:    Options{Policy: testPolicy, ClaimTTL: time.Minute, FailClock: &clock{disable: true}},
				configs: tc.configs,
				sender:  sendFunc(func() deliver.Result { return deliver.Result{Verdict: deliver.Retry, Status: 503} }),
				metrics: newMetrics(prometheus.NewRegistry(), nil),
				log:     slog.New(slog.DiscardHandler),
				slots:   newSlots(1, 1, prometheus.NewGauge(prometheus.GaugeOpts{Name: "inflight"})),
				parking: newParking(0, prometheus.NewGauge(prometheus.GaugeOpts{Name: "parked"})),
			}
			rec := &kgo.Record{Topic: "feedback.bounce", Value: eventWith("bounce"), Timestamp: time.Now()}
			j := &job{rec: rec, part: &offsets.Partition{Topic: rec.Topic}}
			s := p.slots.acquire(t.Context())
			defer s.done()
			if o := processed(t.Context(), p, j, s); o.Kind != DeadLettered || o.Reason != dlq.ReasonEndpointDisabled {
				t.Fatalf("the clock tripped: outcome %v %q, want an endpoint_disabled dead letter", o.Kind, o.Reason)
			}
			instead := p.disableConfig(t.Context(), j)
			switch {
			case tc.want == nil && (instead != nil || j.disable == nil):
				t.Fatalf("disabled: instead %+v, job disables %+v", instead, j.disable)
			case tc.want != nil && (instead == nil || instead.Kind != tc.want.Kind || j.disable != nil):
				t.Fatalf("store failed: instead %+v (want %v), job still disables %+v", instead, tc.want.Kind, j.disable)
			}
		})
	}
}
