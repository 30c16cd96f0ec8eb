package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/retry"
)

// settle carries out the outcome of a job: it is the one function that
// produces retry and dead-letter records, records deliveries in dedupe,
// disables a config that answered 410, publishes to the outcomes topic,
// counts and logs outcomes, and marks the record's offset: settled (it may
// be committed), or abandoned for Abandoned or if ctx ended before a
// produce was acknowledged (the outcome records' too). It gives up the
// job's slots once the outcome records are handed to the client (and a
// delivery's dedupe record to the store); the job stays counted as
// running (a drain or revoke waits for it) until its offset is marked,
// which may come after settle returns, once the broker (and Redis)
// acknowledged them.
func (p *Pipeline) settle(ctx context.Context, j *job, o Outcome, s *slot) {
	j.slot = s
	if o.Attempt != nil {
		p.attempted(j, *o.Attempt)
	}
	if !p.carryOut(ctx, j, o) {
		s.done()
		j.finish(false)
		return
	}
	p.publish(ctx, j, o.Attempt, j.settledAs)
	s.done()
}

// finish marks the job's offset settled or abandoned and ends its count as
// running, unless it waits for its dedupe record too (see unsettled). It may
// be called from any goroutine, once.
func (j *job) finish(settled bool) { j.unsettled().finish(settled) }

// unsettled is what finishing the job needs: all that is kept of it while
// its outcome records and dedupe record are on their way, not its record,
// event or answer.
func (j *job) unsettled() unsettled { return unsettled{j.part, j.rec.Offset, j.slot, j.recording} }

// unsettled is a job whose offset is yet to be marked. A delivered job
// that is recorded in dedupe (recording) is finished twice, once by its
// dedupe record and once by its outcome records, and marked on the second.
type unsettled struct {
	part      *offsets.Partition
	offset    int64
	slot      *slot
	recording *recording // nil: the first finish marks the offset
}

// recording is a delivered job's dedupe record, which is in Redis before its
// offset is marked: a record read again after a crash or rebalance before
// the commit finds it (delivered, not sent again).
type recording struct {
	pending   atomic.Int32 // finishes to come: 2, then 1
	abandoned atomic.Bool
}

func (u unsettled) finish(settled bool) {
	if r := u.recording; r != nil {
		if !settled {
			r.abandoned.Store(true)
		}
		if r.pending.Add(-1) > 0 {
			return
		}
		settled = !r.abandoned.Load()
	}
	if settled {
		u.part.Settle(u.offset)
	} else {
		u.part.Abandon(u.offset)
	}
	u.slot.end()
}

// carryOut carries out o, and what it turns into when a produce is refused
// for good (a retry record becomes a dead letter, a dead letter a lost
// one); the job's settledAs is the outcome carried out in the end.
func (p *Pipeline) carryOut(ctx context.Context, j *job, o Outcome) bool {
	j.settledAs = o
	switch o.Kind {
	case Abandoned:
		return false
	case Delivered:
		if p.opts.Dedupe != nil {
			p.record(j)
		}
		p.final(j, "delivered")
		p.logEvent(slog.LevelInfo, "delivered", j)
	case Duplicate:
		msg := "already delivered: not sent again"
		if o.Reason == dupExhausted {
			msg = "retries exhausted but delivered by another copy: not dead-lettered"
		}
		p.logEvent(slog.LevelInfo, msg, j)
	case Skipped:
		p.metrics.skipped.WithLabelValues(o.Reason).Inc()
		p.logEvent(slog.LevelInfo, "skipped", j, slog.String("reason", o.Reason))
	case Retried, Deferred:
		return p.toRetryTier(ctx, j, o)
	case DeadLettered:
		return p.deadLetter(ctx, j, o)
	case DeadLetterLost:
		// Not even the headers fit: nothing more can be done here. The
		// record stays at its source offset until retention removes it.
		p.metrics.produceErrors.Inc()
		p.metrics.deadLettersLost.WithLabelValues(o.Reason).Inc()
		p.logEvent(slog.LevelError, "DEAD LETTER LOST: the broker refuses it", j, slog.String("reason", o.Reason), slog.String("detail", o.Err.Error()))
	}
	return true
}

// record records the delivered job in dedupe. It does not wait: the job
// keeps neither its slot nor its goroutine meanwhile, and it is finished a
// second time once Redis answered (see unsettled). A failed record is
// logged, once for the records of a batch, which share their error (with
// Redis gone, a line per delivery would flood the log); the job is
// settled all the same.
func (p *Pipeline) record(j *job) {
	j.recording = &recording{}
	j.recording.pending.Store(2)
	u := j.unsettled()
	webhookID, source := j.st.WebhookID, j.st.Source // not the job: it is not held until Redis answers
	p.opts.Dedupe.Record(dedupeKey(j.ev, j.st), func(err error) {
		if err != nil && p.firstOfBatch(err) {
			p.log.Warn("delivered ids not remembered: a re-read would send them again",
				slog.String("webhook_id", webhookID), slog.String("source", source), slog.String("detail", err.Error()))
		}
		u.finish(true)
	})
}

// firstOfBatch reports whether err, a dedupe record error, is not the one
// logged last.
func (p *Pipeline) firstOfBatch(err error) bool {
	p.unrecorded.Lock()
	defer p.unrecorded.Unlock()
	first := !errors.Is(p.unrecorded.last, err)
	p.unrecorded.last = err
	return first
}

// attempted counts an attempt and logs it at debug.
func (p *Pipeline) attempted(j *job, res deliver.Result) {
	label := res.Label()
	p.metrics.attempts.WithLabelValues(j.ev.Channel, label).Inc()
	p.metrics.attemptDuration.WithLabelValues(label).Observe(res.Duration.Seconds())
	if p.log.Enabled(context.Background(), slog.LevelDebug) { // the extra attributes would be built for nothing
		p.logEvent(slog.LevelDebug, "attempt", j, slog.String("outcome", label), slog.Duration("took", res.Duration))
	}
}

// final counts an event that reached its final outcome (result: delivered
// or dead_lettered).
func (p *Pipeline) final(j *job, result string) {
	p.metrics.deliveries.WithLabelValues(j.ev.Channel, j.ev.Status, result).Inc()
	p.metrics.endToEnd.WithLabelValues(j.ev.Channel).Observe(time.Since(j.st.OriginTime).Seconds())
}

// toRetryTier writes the event to the outcome's retry tier, due after
// o.After. A retry record the broker refuses for good is dead-lettered.
func (p *Pipeline) toRetryTier(ctx context.Context, j *job, o Outcome) bool {
	st := j.st
	if o.Kind == Deferred && o.Reason != deferInFlight {
		if st.Deferrals == 0 {
			st.DeferredSince = time.Now()
		}
		st.Deferrals++
	}
	st.DueAt = time.Now().Add(o.After)
	topic := retry.Topic(p.opts.RetryPrefix, o.Tier)
	rec := &kgo.Record{Topic: topic, Key: j.rec.Key, Value: j.rec.Value, Headers: st.Append(foreignHeaders(j.rec))}
	switch err := p.produce(ctx, p.carryTrace(j, rec)); {
	case ctx.Err() != nil:
		return false
	case err != nil:
		p.logEvent(slog.LevelError, "cannot write retry record; dead-lettering", j, slog.String("detail", err.Error()))
		return p.carryOut(ctx, j, deadLettered(dlq.ReasonRetriesExhausted, "retry_not_writable"))
	}
	retryIn := slog.Duration("retry_in", o.After.Round(time.Millisecond))
	if o.Kind == Retried {
		p.metrics.retries.Inc()
		p.logEvent(slog.LevelInfo, "retry scheduled", j, retryIn, slog.String("topic", topic))
	} else {
		msg := "deferred without an attempt"
		if o.Reason == deferInFlight {
			msg = "another attempt for this webhook-id is in flight; checking again later"
		}
		p.metrics.deferred.WithLabelValues(o.Reason).Inc()
		p.logEvent(slog.LevelDebug, msg, j, slog.String("reason", o.Reason), retryIn)
	}
	return true
}

// deadLetter writes the record to the dead-letter topic with the event's
// story, after disabling the config if the job is to (after a 410, or
// failing for delivery.disable_after: see clocked). A
// record the broker refuses for its size is written without its value
// (dlq-value-omitted says how large it was; dlq-source still points to
// it); one refused even so is a DeadLetterLost.
func (p *Pipeline) deadLetter(ctx context.Context, j *job, o Outcome) bool {
	st := j.st
	if o.Error != "" {
		st.LastError = o.Error
	}
	if o.Reason == dlq.ReasonInvalidEvent {
		p.metrics.invalid.WithLabelValues(invalidReason(o.Err)).Inc()
	}
	if instead := p.disableConfig(ctx, j); instead != nil {
		return p.carryOut(ctx, j, *instead)
	}
	e := header.DeadLetter{
		Reason: o.Reason, WebhookID: st.WebhookID, Attempts: st.PriorAttempts + st.Attempts, LastStatus: st.LastStatus,
		LastError: st.LastError, FirstAttemptAt: st.FirstAttemptAt, FailedAt: time.Now(), Source: st.Source,
	}
	err := p.produce(ctx, p.carryTrace(j, dlq.ToKafka(p.opts.DLQTopic, e, j.rec)))
	if err != nil && ctx.Err() == nil {
		p.logEvent(slog.LevelWarn, "dead letter refused by the broker; writing it without its value", j, slog.String("detail", err.Error()))
		e.ValueOmitted = max(len(j.rec.Value), 1)
		err = p.produce(ctx, p.carryTrace(j, dlq.ToKafka(p.opts.DLQTopic, e, j.rec)))
	}
	switch {
	case ctx.Err() != nil:
		return false
	case err != nil:
		return p.carryOut(ctx, j, Outcome{Kind: DeadLetterLost, Reason: o.Reason, Err: err})
	}
	p.metrics.dlq.WithLabelValues(o.Reason).Inc()
	if j.ev != nil {
		p.final(j, "dead_lettered")
	}
	extra := []any{slog.String("reason", o.Reason)}
	if o.Err != nil {
		extra = append(extra, slog.String("detail", o.Err.Error()))
	}
	p.logEvent(slog.LevelInfo, "dead-lettered", j, extra...)
	return true
}

// invalidReason is the feedbackd_events_invalid_total reason of err.
func invalidReason(err error) string {
	var ie *event.InvalidError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return "retry_state"
}

// produce writes rec until the broker acknowledges it (nil), ctx ends
// (ctx's error), or the broker refuses it for good (that error). franz-go
// already retries retriable errors, so any other error is rare and worth a
// log line each time it is retried here.
func (p *Pipeline) produce(ctx context.Context, rec *kgo.Record) error {
	wait := 100 * time.Millisecond
	for {
		r := *rec // a record must not be reused while franz-go holds it
		err := p.cl.ProduceSync(ctx, &r).FirstErr()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case permanent(err):
			return err
		}
		p.metrics.produceErrors.Inc()
		p.log.Error("produce failed; retrying", "topic", rec.Topic, "error", err, "retry_in", wait)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// permanent errors will not go away by producing the same record again.
func permanent(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}

// foreignHeaders are the record's headers that feedbackd does not own.
func foreignHeaders(r *kgo.Record) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(r.Headers)+8)
	for _, h := range r.Headers {
		if !header.IsRetry(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// logEvent logs msg about one job at level, with its identifying
// attributes; nothing is built when the level is off (the hot path logs
// each attempt at debug and each outcome at info).
func (p *Pipeline) logEvent(level slog.Level, msg string, j *job, extra ...any) {
	if p.log.Enabled(context.Background(), level) {
		p.log.Log(context.Background(), level, msg, attrs(j, extra...)...)
	}
}

func attrs(j *job, extra ...any) []any {
	st, ev := j.st, j.ev
	a := make([]any, 0, 8+len(extra))
	a = append(a, slog.String("webhook_id", st.WebhookID), slog.String("source", st.Source))
	if ev != nil {
		a = append(a, slog.String("org", ev.Org), slog.String("sandbox", ev.SandboxID),
			slog.String("channel", ev.Channel), slog.String("status", ev.Status))
	}
	if st.Attempts > 0 {
		a = append(a, slog.Int("attempt", st.Attempts))
		if st.LastStatus != 0 {
			a = append(a, slog.Int("http_status", st.LastStatus))
		}
	}
	if st.LastError != "" {
		a = append(a, slog.String("error", st.LastError))
	}
	return append(a, extra...)
}
