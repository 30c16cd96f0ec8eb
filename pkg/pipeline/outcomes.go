package pipeline

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// publish writes the job's records to the outcomes topic and the delivery
// log: its attempt (if one was made), the outcome it settled with, and the
// operational events they caused. It returns once the broker acknowledged them, so that the
// input offset is committed only after its outcome is on the topic (at
// least once); false if ctx ended first. A record the broker refuses for
// good is counted and logged, not retried: it must not hold its partition.
func (p *Pipeline) publish(ctx context.Context, j *job, attempt *deliver.Result, done Outcome) bool {
	if p.opts.OutcomesTopic == "" && p.opts.Log == nil {
		return true
	}
	now := time.Now()
	recs := make([]*outcome.Record, 0, 4)
	if attempt != nil {
		r := p.outcomeRecord(j, outcome.TypeAttempt, now)
		r.Outcome = attempt.Label()
		r.DurationMs = outcome.Millis(attempt.Duration)
		r.HTTPCode, r.ErrorClass = attempt.Status, attempt.Class
		if len(attempt.Response) > 0 {
			r.Response, r.ResponseTruncated = responseText(attempt.Response), attempt.Truncated
		}
		recs = append(recs, r)
	}
	r := p.outcomeRecord(j, outcome.TypeOutcome, now)
	r.Outcome, r.Reason = done.Kind.String(), done.Reason
	r.ErrorClass = j.st.LastError
	if done.Kind == Retried || done.Kind == Deferred {
		r.RetryInMs = done.After.Milliseconds()
	}
	recs = append(recs, r)
	if done.Kind == DeadLettered && done.Reason == dlq.ReasonRetriesExhausted {
		recs = append(recs, p.outcomeRecord(j, outcome.TypeExhausted, now))
	}
	if j.disable != nil {
		r := p.outcomeRecord(j, outcome.TypeEndpointDisabled, now)
		r.DisabledReason = j.disable.reason
		recs = append(recs, r)
	}
	switch j.breaker {
	case breakerOpened:
		recs = append(recs, p.outcomeRecord(j, outcome.TypeEndpointFailing, now))
	case breakerClosed:
		recs = append(recs, p.outcomeRecord(j, outcome.TypeEndpointRecovered, now))
	}
	if p.opts.Log != nil {
		p.opts.Log.Add(recs)
	}
	if p.opts.OutcomesTopic == "" {
		return true
	}
	return p.produceOutcomes(ctx, recs)
}

func (p *Pipeline) outcomeRecord(j *job, typ string, now time.Time) *outcome.Record {
	st := j.st
	r := &outcome.Record{Type: typ, Time: now, Instance: p.opts.Instance, WebhookID: st.WebhookID,
		Attempt: st.Attempts, HTTPCode: st.LastStatus,
		Source: st.Source}
	if ev := j.ev; ev != nil {
		r.EventID, r.RequestID, r.Org, r.Sandbox = ev.ID, ev.RequestID, ev.Org, ev.SandboxID
		r.Channel, r.Status, r.CampaignID = ev.Channel, ev.Status, ev.CampaignID
	}
	return r
}

// responseText is the kept bytes of an answer as JSON text: a multi-byte
// character cut at the limit is dropped rather than turned into U+FFFD.
func responseText(b []byte) string {
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return string(b)
}

// produceOutcomes writes recs to the outcomes topic, in order, until the
// broker acknowledges them (true) or ctx ends (false).
func (p *Pipeline) produceOutcomes(ctx context.Context, recs []*outcome.Record) bool {
	krecs := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		v, err := r.Marshal()
		if err != nil { // a Record always encodes; counted in case it ever does not
			p.metrics.outcomeErrors.Inc()
			continue
		}
		krecs = append(krecs, &kgo.Record{Topic: p.opts.OutcomesTopic, Key: r.Key(), Value: v})
	}
	wait := 100 * time.Millisecond
	for len(krecs) > 0 {
		var again []*kgo.Record
		for _, res := range p.cl.ProduceSync(ctx, krecs...) {
			switch {
			case res.Err == nil:
				p.metrics.outcomes.Inc()
			case ctx.Err() != nil:
				return false
			case permanent(res.Err):
				p.metrics.outcomeErrors.Inc()
				p.log.Error("outcome record refused by the broker; not retried", "topic", p.opts.OutcomesTopic, "error", res.Err)
			default:
				p.metrics.outcomeErrors.Inc()
				again = append(again, &kgo.Record{Topic: res.Record.Topic, Key: res.Record.Key, Value: res.Record.Value})
			}
		}
		if len(again) == 0 {
			return true
		}
		p.log.Warn("outcome records not written; retrying", "topic", p.opts.OutcomesTopic, "records", len(again), "retry_in", wait)
		if !backoff.Sleep(ctx, wait) {
			return false
		}
		krecs, wait = again, min(2*wait, 10*time.Second)
	}
	return true
}
