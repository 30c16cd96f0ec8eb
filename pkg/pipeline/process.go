package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/dedupe"
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
func (p *Pipeline) process(ctx context.Context, j job, s *slot) bool {
	ev, st, err := p.decode(j)
	if err != nil {
		st.LastError = invalidClass(err)
		return p.deadLetter(ctx, j, nil, st, dlq.ReasonInvalidEvent, slog.String("detail", err.Error()))
	}
	if !event.Deliverable(ev.Status) {
		return p.skip(ev, st, webhook.SkipStatus)
	}

	t, err := p.lookup(ctx, ev)
	switch {
	case errors.Is(err, configstore.ErrNotFound):
		return p.skip(ev, st, webhook.SkipNoConfig)
	case errors.Is(err, configstore.ErrCorrupt):
		st.LastError = "config_unusable"
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointInvalid)
	case err != nil:
		return false // ctx ended while Redis was unavailable
	case !t.Config.Enabled:
		st.LastError = "config_disabled"
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointDisabled)
	}
	if reason := t.Config.SkipReason(ev.Channel, ev.CampaignID); reason != "" {
		return p.skip(ev, st, reason)
	}
	d, ok := p.admit(j, s, t.Endpoint)
	switch {
	case !ok:
		return false
	case d.Verdict == admission.Open:
		return p.deferRetry(ctx, j, ev, st, time.Until(d.Until), deferCircuitOpen)
	case d.Verdict == admission.Busy:
		return p.deferRetry(ctx, j, ev, st, p.opts.Policy.Schedule[min(st.Deferrals, len(p.opts.Policy.Schedule)-1)], deferEndpointBusy)
	}
	claim := p.claim(ctx, j, ev, st)
	switch claim.State {
	case dedupe.Delivered:
		d.Release()
		p.logEvent(slog.LevelInfo, "already delivered: not sent again", ev, st)
		return true
	case dedupe.InFlight:
		d.Release()
		return p.waitForClaim(ctx, j, ev, st)
	}
	res := p.sender.Send(ctx, t, st.WebhookID, ev.Body(make([]byte, 0, len(ev.Raw)+32)))
	s.settle()
	if res.Verdict != deliver.Delivered && p.opts.Dedupe != nil {
		p.opts.Dedupe.Release(ctx, dedupeKey(ev, st), claim) // the next attempt need not wait for it
	}
	if res.Verdict == deliver.Aborted {
		d.Release()
		return false
	}
	p.attempted(ev, st, res)
	p.report(ctx, ev, t, res) // before the next attempt to the endpoint may start
	d.Release()

	switch res.Verdict {
	case deliver.Delivered:
		if p.opts.Dedupe != nil {
			if err := p.opts.Dedupe.Record(ctx, dedupeKey(ev, st)); err != nil {
				p.logEvent(slog.LevelWarn, "delivered id not remembered: a re-read would send it again", ev, st, slog.String("err", err.Error()))
			}
		}
		p.delivered(ev, st, res)
		return true
	case deliver.Retry:
		tier, delay, ok := p.opts.Policy.Next(st.Attempts, res.RetryAfter)
		switch {
		case ok:
		case p.opts.Dedupe != nil && p.mayBeDelivered(j) && p.opts.Dedupe.Delivered(ctx, dedupeKey(ev, st)):
			// Another copy of the event, left by a crash, was delivered.
			p.logEvent(slog.LevelInfo, "retries exhausted but delivered by another copy: not dead-lettered", ev, st)
			return true
		default:
			return p.deadLetter(ctx, j, ev, st, dlq.ReasonRetriesExhausted)
		}
		return p.scheduleRetry(ctx, j, ev, st, tier, delay)
	case deliver.Gone:
		if err := p.configs.Disable(ctx, ev.Org, ev.SandboxID, "endpoint answered 410 Gone"); err != nil {
			p.log.Error("cannot disable config after 410", "org", ev.Org, "sandbox", ev.SandboxID, "err", err)
		}
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonRejected)
	case deliver.Unreachable:
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonEndpointInvalid)
	default: // deliver.Reject
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonRejected)
	}
}

// decode parses the record and returns its delivery state: fresh for an
// input record, from the headers for a retry record. The state is returned
// even when the event is invalid, so the dead letter carries its id.
func (p *Pipeline) decode(j job) (*event.Event, *retry.State, error) {
	r := j.rec
	st := j.state
	var headerID string // a replay's; any sender can set it too
	if st == nil {
		st = &retry.State{Source: dlq.Source(r.Topic, r.Partition, r.Offset), OriginTime: r.Timestamp}
		headerID = dlq.Header(r.Headers, retry.HeaderWebhookID)
		if event.IsEventID(headerID) {
			st.WebhookID = headerID
		}
	}
	readReplayHistory(r, st)
	if j.badState != nil {
		p.metrics.invalid.WithLabelValues("retry_state").Inc()
		return nil, st, j.badState
	}
	ev, err := event.Parse(r.Value)
	if err == nil {
		if ev.ID != "" {
			st.WebhookID = ev.ID
		}
		if headerID != "" && !event.IsEventID(headerID) {
			err = &event.InvalidError{Reason: "webhook_id", Field: retry.HeaderWebhookID,
				Message: "the record's webhook-id header is not a valid eventId (^[A-Za-z0-9._:-]{1,128}$)"}
		}
	}
	if ie := (*event.InvalidError)(nil); errors.As(err, &ie) {
		p.metrics.invalid.WithLabelValues(ie.Reason).Inc()
	}
	if st.WebhookID == "" {
		st.WebhookID = event.DeriveID(r.Topic, r.Partition, r.Offset)
	}
	if err != nil {
		return nil, st, err
	}
	return ev, st, nil
}

// claim claims the event's webhook-id for this attempt if it may have been
// delivered already (see mayBeDelivered); without dedupe, or for an event
// that cannot have been, the answer is Unknown and the attempt goes ahead.
func (p *Pipeline) claim(ctx context.Context, j job, ev *event.Event, st *retry.State) dedupe.Claim {
	if p.opts.Dedupe == nil || !p.mayBeDelivered(j) {
		return dedupe.Claim{State: dedupe.Unknown}
	}
	return p.opts.Dedupe.Claim(ctx, dedupeKey(ev, st), p.opts.ClaimTTL)
}

// dedupeKey names one event for duplicate suppression: its tenant, the
// timestamp of the input record it came from (retry records carry it) and
// its webhook-id. Every copy of an event has the same key; two events that
// share an eventId in different tenants, or a derived id after a topic was
// recreated, do not.
func dedupeKey(ev *event.Event, st *retry.State) string {
	return ev.Org + "/" + ev.SandboxID + "/" + strconv.FormatInt(st.OriginTime.UnixMilli(), 10) + "/" + st.WebhookID
}

// mayBeDelivered reports whether the record's event may have been
// delivered already, so that the dedupe check is worth a Redis round trip:
// it was read before (an earlier owner of the partition may have processed
// it), or it is a retry or replayed record, whose event may have been
// delivered through a re-read of its original. An input record produced
// after this member got its partition cannot have been.
func (p *Pipeline) mayBeDelivered(j job) bool {
	return j.state != nil || j.badState != nil || j.part.MayBeReread(j.rec.Offset) ||
		dlq.Header(j.rec.Headers, dlq.HeaderReplayJob) != ""
}

// readReplayHistory takes the attempts made before a replay from the
// headers the replay added (they are forwarded to retry records too).
func readReplayHistory(r *kgo.Record, st *retry.State) {
	if len(r.Headers) == 0 { // a fresh input record: nothing to parse (nor errors to allocate)
		return
	}
	if n, err := strconv.Atoi(dlq.Header(r.Headers, dlq.HeaderReplayPriorAttempts)); err == nil && n > 0 {
		st.PriorAttempts = n
	}
	if st.FirstAttemptAt.IsZero() {
		if t, err := time.Parse(time.RFC3339, dlq.Header(r.Headers, dlq.HeaderReplayFirstAttemptAt)); err == nil {
			st.FirstAttemptAt = t
		}
	}
}

// lookup asks the config store, waiting out Redis outages, a Redis that
// is being rebuilt and secrets sealed with a key this instance lacks: none
// is a reason to skip or dead-letter an event.
func (p *Pipeline) lookup(ctx context.Context, ev *event.Event) (*webhook.Target, error) {
	backoff := 100 * time.Millisecond
	for {
		t, err := p.configs.Lookup(ctx, ev.Org, ev.SandboxID)
		if err == nil || errors.Is(err, configstore.ErrNotFound) || errors.Is(err, configstore.ErrCorrupt) {
			return t, err
		}
		p.metrics.configUnavailable.Inc()
		p.log.Debug("config lookup unavailable; the event waits", "org", ev.Org, "sandbox", ev.SandboxID, "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Reasons an event is deferred without an attempt.
const (
	deferCircuitOpen  = "circuit_open"
	deferEndpointBusy = "endpoint_busy"
	deferInFlight     = "in_flight" // another attempt for the same webhook-id holds its claim
)

var errRevoked = errors.New("partition revoked")

// admit asks admission control whether the attempt may go now. While the
// endpoint has its in-flight share taken, the job waits its turn for a
// place: without its delivery slot if fewer than MaxParked jobs wait
// already, or else with it unless the endpoint is slow (see
// admission.Controller.Slow). An endpoint that is busy but not slow frees
// places as fast as any delivery frees a slot, so waiting for it costs the
// others nothing, and fetching slows down to its pace (a single busy
// tenant is not deferred); a slow one's events are deferred, and it holds
// no slots beyond its in-flight share. ok is false if the job is to be
// abandoned: the drain started, or its partition was revoked meanwhile.
func (p *Pipeline) admit(j job, s *slot, ep string) (d admission.Decision, ok bool) {
	if p.opts.Admission == nil {
		return admission.Decision{Verdict: admission.Go, Release: func() {}}, true
	}
	d = p.opts.Admission.Admit(p.parking, ep)
	switch {
	case d.Verdict != admission.Busy:
		return d, true
	case p.tryPark(ep):
		s.release()
		waited, err := p.waitTurn(j, ep, time.Second, func() bool { return false })
		p.leavePark(ep)
		if err != nil {
			return d, false
		}
		s.take()
		return waited, true
	case !p.opts.Admission.Slow(ep):
		slow := func() bool { return p.opts.Admission.Slow(ep) }
		switch waited, err := p.waitTurn(j, ep, slowCheck, slow); {
		case err == nil:
			return waited, true
		case !errors.Is(err, errSlow):
			return d, false
		}
	}
	return d, p.parking.Err() == nil
}

// slowCheck is how often a job waiting with its slot checks that the
// endpoint has not become slow.
const slowCheck = 100 * time.Millisecond

var errSlow = errors.New("endpoint slow")

// tryPark counts a job waiting for ep, if there is room: MaxParked in all,
// half of that for one endpoint, so that one slow endpoint cannot take
// every place.
func (p *Pipeline) tryPark(ep string) bool {
	p.parkMu.Lock()
	defer p.parkMu.Unlock()
	if p.parked.Load() >= int64(p.opts.MaxParked) || p.parkedBy[ep] >= max(1, p.opts.MaxParked/2) {
		return false
	}
	p.parked.Add(1)
	p.parkedBy[ep]++
	p.metrics.parked.Inc()
	return true
}

func (p *Pipeline) leavePark(ep string) {
	p.parkMu.Lock()
	defer p.parkMu.Unlock()
	p.parked.Add(-1)
	if p.parkedBy[ep]--; p.parkedBy[ep] == 0 {
		delete(p.parkedBy, ep)
	}
	p.metrics.parked.Dec()
}

// waitTurn waits for the endpoint's place (see Admitter.Wait) until the
// drain starts (its error), the job's partition is revoked (errRevoked) or
// giveUp says so (errSlow), both checked every interval.
func (p *Pipeline) waitTurn(j job, ep string, every time.Duration, giveUp func() bool) (admission.Decision, error) {
	ctx, cancel := context.WithCancelCause(p.parking)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				switch {
				case j.part.Closed():
					cancel(errRevoked)
					return
				case giveUp():
					cancel(errSlow)
					return
				}
			}
		}
	}()
	d, err := p.opts.Admission.Wait(ctx, ep)
	if err != nil {
		return d, context.Cause(ctx)
	}
	return d, nil
}

// report tells admission control how the endpoint answered: a retryable
// answer or none is a failure; any other answer shows it is up.
func (p *Pipeline) report(ctx context.Context, ev *event.Event, t *webhook.Target, res deliver.Result) {
	if p.opts.Admission == nil {
		return
	}
	switch res.Verdict {
	case deliver.Retry:
		if until, opened := p.opts.Admission.Failure(ctx, t.Endpoint); opened {
			p.log.Warn("circuit breaker opened: no attempts to this endpoint until it ends",
				"org", ev.Org, "sandbox", ev.SandboxID, "until", until.UTC().Format(time.RFC3339), "error", res.Class)
		}
	case deliver.Delivered, deliver.Reject, deliver.Gone:
		if p.opts.Admission.Success(ctx, t.Endpoint) {
			p.log.Info("circuit breaker closed: the endpoint answers again", "org", ev.Org, "sandbox", ev.SandboxID)
		}
	}
}

// deferRetry puts the event back in a retry tier, due after delay and up
// to half as long again, without an attempt: its endpoint cannot take it
// now. The spread keeps the events deferred during one open period of a
// breaker (all told to wait until it ends) from coming back together, a
// burst of reads and re-deferrals the other tenants would feel. Deferrals
// do not use up the retry schedule, but an event is deferred for at most
// the schedule's span (its sum); after that it is dead-lettered.
func (p *Pipeline) deferRetry(ctx context.Context, j job, ev *event.Event, st *retry.State, delay time.Duration, reason string) bool {
	now := time.Now()
	if st.Deferrals == 0 {
		st.DeferredSince = now
	}
	if now.Sub(st.DeferredSince) >= p.opts.Policy.Span() {
		st.LastError = reason
		return p.deadLetter(ctx, j, ev, st, dlq.ReasonRetriesExhausted)
	}
	st.Deferrals++
	delay = max(delay, 0)
	delay += rand.N(delay/2 + 1)
	written, settled := p.requeue(ctx, j, ev, st, p.opts.Policy.TierFor(delay), delay)
	if written {
		p.metrics.deferred.WithLabelValues(reason).Inc()
		p.logEvent(slog.LevelDebug, "deferred without an attempt", ev, st, slog.String("reason", reason), slog.Duration("in", delay.Round(time.Millisecond)))
	}
	return settled
}

// waitForClaim puts the event back in the first retry tier, without an
// attempt, while another attempt for its webhook-id holds the claim. Unlike
// deferRetry it is not bounded by the schedule's span and leaves the
// deferral count alone: the claim ends when that attempt does, or expires
// (ClaimTTL) if its instance crashed, and the event is then suppressed
// (delivered) or attempted.
func (p *Pipeline) waitForClaim(ctx context.Context, j job, ev *event.Event, st *retry.State) bool {
	delay := p.opts.Policy.Schedule[0]
	written, settled := p.requeue(ctx, j, ev, st, p.opts.Policy.TierFor(delay), delay)
	if written {
		p.metrics.deferred.WithLabelValues(deferInFlight).Inc()
		p.logEvent(slog.LevelDebug, "another attempt for this webhook-id is in flight; checking again later", ev, st, slog.Duration("in", delay))
	}
	return settled
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
	if p.log.Enabled(context.Background(), slog.LevelDebug) { // the extra attributes would be built for nothing
		p.logEvent(slog.LevelDebug, "attempt", ev, st, slog.String("outcome", outcome), slog.Duration("took", res.Duration))
	}
}

func (p *Pipeline) delivered(ev *event.Event, st *retry.State, res deliver.Result) {
	p.metrics.deliveries.WithLabelValues(ev.Channel, ev.Status, "delivered").Inc()
	p.metrics.endToEnd.WithLabelValues(ev.Channel).Observe(time.Since(st.OriginTime).Seconds())
	p.logEvent(slog.LevelInfo, "delivered", ev, st)
}

func (p *Pipeline) skip(ev *event.Event, st *retry.State, reason string) bool {
	p.metrics.skipped.WithLabelValues(reason).Inc()
	p.logEvent(slog.LevelInfo, "skipped", ev, st, slog.String("reason", reason))
	return true
}

func (p *Pipeline) scheduleRetry(ctx context.Context, j job, ev *event.Event, st *retry.State, tier, delay time.Duration) bool {
	written, settled := p.requeue(ctx, j, ev, st, tier, delay)
	if written {
		p.metrics.retries.Inc()
		p.logEvent(slog.LevelInfo, "retry scheduled", ev, st, slog.Duration("in", delay.Round(time.Millisecond)),
			slog.String("topic", retry.Topic(p.opts.RetryPrefix, tier)))
	}
	return settled
}

// requeue writes the event to a retry tier, due after delay. written says
// whether it is there; settled whether the record is settled (false: ctx
// ended). A retry record the broker refuses for good is dead-lettered.
func (p *Pipeline) requeue(ctx context.Context, j job, ev *event.Event, st *retry.State, tier, delay time.Duration) (written, settled bool) {
	st.DueAt = time.Now().Add(delay)
	topic := retry.Topic(p.opts.RetryPrefix, tier)
	rec := &kgo.Record{Topic: topic, Key: j.rec.Key, Value: j.rec.Value, Headers: st.AppendHeaders(foreignHeaders(j.rec))}
	switch err := p.produce(ctx, rec); {
	case ctx.Err() != nil:
		return false, false
	case err != nil:
		p.logEvent(slog.LevelError, "cannot write retry record; dead-lettering", ev, st, slog.String("err", err.Error()))
		st.LastError = "retry_not_writable"
		return false, p.deadLetter(ctx, j, ev, st, dlq.ReasonRetriesExhausted)
	}
	return true, true
}

// deadLetter writes the record to the dead-letter topic with st's story.
// A record the broker refuses for its size is written without its value
// (dlq-value-omitted says how large it was; dlq-source still points to it).
func (p *Pipeline) deadLetter(ctx context.Context, j job, ev *event.Event, st *retry.State, reason string, extra ...any) bool {
	e := dlq.Entry{
		Reason: reason, WebhookID: st.WebhookID, Attempts: st.PriorAttempts + st.Attempts, LastStatus: st.LastStatus,
		LastError: st.LastError, FirstAttemptAt: st.FirstAttemptAt, FailedAt: time.Now(), Source: st.Source,
	}
	err := p.produce(ctx, e.Record(p.opts.DLQTopic, j.rec))
	if err != nil && ctx.Err() == nil {
		p.logEvent(slog.LevelWarn, "dead letter refused by the broker; writing it without its value", ev, st, slog.String("err", err.Error()))
		e.ValueOmitted = max(len(j.rec.Value), 1)
		err = p.produce(ctx, e.Record(p.opts.DLQTopic, j.rec))
	}
	switch {
	case ctx.Err() != nil:
		return false
	case err != nil:
		// Not even the headers fit: nothing more can be done here. The
		// record stays at its source offset until retention removes it.
		p.metrics.produceErrors.Inc()
		p.logEvent(slog.LevelError, "DEAD LETTER LOST: the broker refuses it", ev, st, slog.String("reason", reason), slog.String("err", err.Error()))
		return true
	}
	p.metrics.dlq.WithLabelValues(reason).Inc()
	if ev != nil {
		p.metrics.deliveries.WithLabelValues(ev.Channel, ev.Status, "dead_lettered").Inc()
		p.metrics.endToEnd.WithLabelValues(ev.Channel).Observe(time.Since(st.OriginTime).Seconds())
	}
	p.logEvent(slog.LevelInfo, "dead-lettered", ev, st, append([]any{slog.String("reason", reason)}, extra...)...)
	return true
}

// produce writes rec until the broker acknowledges it (nil), ctx ends
// (ctx's error), or the broker refuses it for good (that error). franz-go
// already retries retriable errors, so any other error is rare and worth a
// log line each time it is retried here.
func (p *Pipeline) produce(ctx context.Context, rec *kgo.Record) error {
	backoff := 100 * time.Millisecond
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
		p.log.Error("produce failed; retrying", "topic", rec.Topic, "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// permanent errors will not go away by producing the same record again.
func permanent(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}

// invalidClass is the dead-letter error of a record that is not a valid
// event, in a fixed vocabulary.
func invalidClass(err error) string {
	var ie *event.InvalidError
	if errors.As(err, &ie) {
		return ie.Class()
	}
	return "retry_state"
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

// logEvent logs msg about one event at level, with its identifying
// attributes; nothing is built when the level is off (the hot path logs
// each attempt at debug and each outcome at info).
func (p *Pipeline) logEvent(level slog.Level, msg string, ev *event.Event, st *retry.State, extra ...any) {
	if p.log.Enabled(context.Background(), level) {
		p.log.Log(context.Background(), level, msg, p.attrs(ev, st, extra...)...)
	}
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
	}
	if st.LastError != "" {
		a = append(a, slog.String("error", st.LastError))
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
