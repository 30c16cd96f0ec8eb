package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// job is one record on its way through the stages.
type job struct {
	rec      *kgo.Record
	part     *offsets.Partition
	state    *retry.State // set for retry records
	badState error        // a retry record whose state cannot be read
}

// process runs the stages for one record: decode, route, deliver, settle.
// It returns true once the record is settled (delivered, skipped, handed to
// a retry tier or dead-lettered, every produce acknowledged) and false if
// ctx ended first, in which case the record must not be committed.
func (p *Pipeline) process(ctx context.Context, j job) bool {
	ev, st, err := p.decode(j)
	if err != nil {
		return p.deadLetter(ctx, j, nil, st, dlq.ReasonInvalidEvent, deliver.Result{Class: err.Error()})
	}
	if !event.Deliverable(ev.Status) {
		return p.skip(j, ev, st, webhook.SkipStatus)
	}

	t, err := p.lookup(ctx, ev)
	switch {
	case errors.Is(err, configstore.ErrNotFound):
		return p.skip(j, ev, st, webhook.SkipNoConfig)
	case errors.Is(err, configstore.ErrCorrupt):
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointInvalid, deliver.Result{Class: "config_unusable"})
	case err != nil:
		return false // ctx ended while Redis was unavailable
	case !t.Config.Enabled:
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointDisabled, deliver.Result{Class: "config_disabled"})
	}
	if reason := t.Config.SkipReason(ev.Channel, ev.CampaignID); reason != "" {
		return p.skip(j, ev, st, reason)
	}

	res := p.sender.Send(ctx, t, st.WebhookID, ev.Body(make([]byte, 0, len(ev.Raw)+32)))
	if res.Verdict == deliver.Aborted {
		return false
	}
	p.attempted(ev, st, res)

	switch res.Verdict {
	case deliver.Delivered:
		p.delivered(ev, st, res)
		return true
	case deliver.Retry:
		tier, delay, ok := p.opts.Policy.Next(st.Attempts, res.RetryAfter)
		if !ok {
			return p.deadLetter(ctx, j, ev, st, dlq.ReasonRetriesExhausted, res)
		}
		return p.scheduleRetry(ctx, j, ev, st, res, tier, delay)
	case deliver.Gone:
		if err := p.configs.Disable(ctx, ev.Org, ev.SandboxID, "endpoint answered 410 Gone"); err != nil {
			p.log.Error("cannot disable config after 410", "org", ev.Org, "sandbox", ev.SandboxID, "err", err)
		}
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonRejected, res)
	case deliver.Unreachable:
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointInvalid, res)
	default: // deliver.Reject
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonRejected, res)
	}
}

// decode parses the record and returns its delivery state: fresh for an
// input record, from the headers for a retry record. The state is returned
// even when the event is invalid, so the dead letter carries its id.
func (p *Pipeline) decode(j job) (*event.Event, *retry.State, error) {
	r := j.rec
	st := j.state
	if st == nil {
		st = &retry.State{
			WebhookID:  headerValue(r, retry.HeaderWebhookID), // set by a replay
			Source:     dlq.Source(r.Topic, r.Partition, r.Offset),
			OriginTime: r.Timestamp,
		}
		if st.WebhookID == "" {
			st.WebhookID = event.DeriveID(r.Topic, r.Partition, r.Offset)
		}
	}
	if j.badState != nil {
		p.metrics.invalid.WithLabelValues("retry_state").Inc()
		return nil, st, j.badState
	}
	ev, err := event.Parse(r.Value)
	if err != nil {
		var ie *event.InvalidError
		if errors.As(err, &ie) {
			p.metrics.invalid.WithLabelValues(ie.Reason).Inc()
		}
		return nil, st, err
	}
	if ev.ID != "" {
		st.WebhookID = ev.ID
	}
	return ev, st, nil
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// lookup asks the config store, waiting out Redis outages and a Redis that
// is being rebuilt: neither is a reason to skip or dead-letter an event.
func (p *Pipeline) lookup(ctx context.Context, ev *event.Event) (*webhook.Target, error) {
	backoff := 100 * time.Millisecond
	for {
		t, err := p.configs.Lookup(ctx, ev.Org, ev.SandboxID)
		if err == nil || errors.Is(err, configstore.ErrNotFound) || errors.Is(err, configstore.ErrCorrupt) {
			return t, err
		}
		p.metrics.configUnavailable.Inc()
		p.log.Debug("config lookup unavailable; waiting", "org", ev.Org, "sandbox", ev.SandboxID, "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (p *Pipeline) attempted(ev *event.Event, st *retry.State, res deliver.Result) {
	now := time.Now()
	st.Attempts++
	if st.FirstAttemptAt.IsZero() {
		st.FirstAttemptAt = now
	}
	st.LastStatus, st.LastError = res.Status, res.Class
	outcome := res.Outcome()
	p.metrics.attempts.WithLabelValues(ev.Channel, outcome).Inc()
	p.metrics.attemptDuration.WithLabelValues(outcome).Observe(res.Duration.Seconds())
	p.log.Debug("attempt", p.attrs(ev, st, slog.String("outcome", outcome), slog.Duration("took", res.Duration))...)
}

func (p *Pipeline) delivered(ev *event.Event, st *retry.State, res deliver.Result) {
	p.metrics.deliveries.WithLabelValues(ev.Channel, ev.Status, "delivered").Inc()
	p.metrics.endToEnd.WithLabelValues(ev.Channel).Observe(time.Since(st.OriginTime).Seconds())
	p.log.Info("delivered", p.attrs(ev, st)...)
}

func (p *Pipeline) skip(j job, ev *event.Event, st *retry.State, reason string) bool {
	p.metrics.skipped.WithLabelValues(reason).Inc()
	p.log.Info("skipped", p.attrs(ev, st, slog.String("reason", reason))...)
	return true
}

func (p *Pipeline) scheduleRetry(ctx context.Context, j job, ev *event.Event, st *retry.State, res deliver.Result, tier, delay time.Duration) bool {
	st.DueAt = time.Now().Add(delay)
	topic := retry.Topic(p.opts.RetryPrefix, tier)
	if !p.produce(ctx, func() *kgo.Record {
		return &kgo.Record{Topic: topic, Key: j.rec.Key, Value: j.rec.Value, Headers: st.AppendHeaders(foreignHeaders(j.rec))}
	}) {
		return false
	}
	p.metrics.retries.Inc()
	p.log.Info("retry scheduled", p.attrs(ev, st, slog.Duration("in", delay.Round(time.Millisecond)), slog.String("topic", topic))...)
	return true
}

func (p *Pipeline) deadLetter(ctx context.Context, j job, ev *event.Event, st *retry.State, reason string, res deliver.Result) bool {
	e := dlq.Entry{
		Reason: reason, WebhookID: st.WebhookID, Attempts: st.Attempts, LastStatus: st.LastStatus,
		LastError: st.LastError, FirstAttemptAt: st.FirstAttemptAt, FailedAt: time.Now(), Source: st.Source,
	}
	if st.Attempts == 0 { // dead-lettered before any attempt: say why
		e.LastError = res.Class
	}
	if !p.produce(ctx, func() *kgo.Record { return e.Record(p.opts.DLQTopic, j.rec) }) {
		return false
	}
	p.metrics.dlq.WithLabelValues(reason).Inc()
	if ev != nil {
		p.metrics.deliveries.WithLabelValues(ev.Channel, ev.Status, "dead_lettered").Inc()
		p.metrics.endToEnd.WithLabelValues(ev.Channel).Observe(time.Since(st.OriginTime).Seconds())
	}
	p.log.Info("dead-lettered", p.attrs(ev, st, slog.String("reason", reason), slog.String("error", e.LastError))...)
	return true
}

// produce writes a record built by mk until the broker acknowledges it or
// ctx ends; it reports which. franz-go already retries retriable errors,
// so an error here is rare and worth a log line each time.
func (p *Pipeline) produce(ctx context.Context, mk func() *kgo.Record) bool {
	backoff := 100 * time.Millisecond
	for {
		rec := mk()
		err := p.cl.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.metrics.produceErrors.Inc()
		p.log.Error("produce failed; retrying", "topic", rec.Topic, "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// foreignHeaders are the record's headers that feedbackd does not own.
func foreignHeaders(r *kgo.Record) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(r.Headers)+8)
	for _, h := range r.Headers {
		if !retry.IsOwnHeader(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

func (p *Pipeline) attrs(ev *event.Event, st *retry.State, extra ...any) []any {
	a := make([]any, 0, 8+len(extra))
	a = append(a, slog.String("webhook-id", st.WebhookID), slog.String("source", st.Source))
	if ev != nil {
		a = append(a, slog.String("org", ev.Org), slog.String("sandbox", ev.SandboxID),
			slog.String("channel", ev.Channel), slog.String("status", ev.Status))
	}
	if st.Attempts > 0 {
		a = append(a, slog.Int("attempt", st.Attempts))
		if st.LastStatus != 0 {
			a = append(a, slog.Int("http_status", st.LastStatus))
		}
		if st.LastError != "" {
			a = append(a, slog.String("error", st.LastError))
		}
	}
	return append(a, extra...)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
