package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// job is one record on its way through the stages.
type job struct {
	rec      *kgo.Record
	part     *offsets.Partition
	state    *header.Retry // read from a retry record's headers; nil for an input record
	badState error         // a retry record whose state cannot be read

	// Set by decode.
	ev *event.Event  // nil if the record is not a valid event
	st *header.Retry // the delivery state: state, or a fresh one for an input record

	res       deliver.Result // the attempt's, if one was made (Outcome.Attempt points here)
	breaker   string         // the attempt's answer opened or closed the endpoint's breaker
	disable   *disabling     // set by clocked: the config is to be disabled, and why
	settledAs Outcome        // set by settle: what was carried out in the end
	slot      *slot          // set by settle: ended by finish
	recording *recording     // set by settle for a delivery it records in dedupe
	span      trace.Span     // the job's process span; nil when not tracing
}

// Breaker transitions an attempt caused (job.breaker).
const (
	breakerOpened = "opened"
	breakerClosed = "closed"
)

// process runs the stages that decide the record's outcome (decode, route,
// admit, claim, attempt, judge) and calls then with it, for settle to carry
// out: once, on this goroutine, or on the one that waited for the attempt's
// answer (see Sender). It writes nothing to Kafka and counts no outcome;
// its effects are the attempt and what the attempt needs: an endpoint's
// place, a dedupe claim, the breaker's and the failure clock's report of
// the answer (and the log lines of waiting for Redis and of breaker
// changes).
func (p *Pipeline) process(ctx context.Context, j *job, s *slot, then func(Outcome)) {
	if err := p.decode(j); err != nil {
		then(Outcome{Kind: DeadLettered, Reason: dlq.ReasonInvalidEvent, Error: invalidClass(err), Err: err})
		return
	}
	t, err := p.route(ctx, j.ev)
	if o, next := routed(j.ev, t, err); !next {
		then(o)
		return
	}
	d, ok := p.admit(ctx, j, s, t.Endpoint)
	if !ok {
		then(abandoned)
		return
	}
	if o, next := admitted(d, j.st, p.opts.Policy, time.Now()); !next {
		then(p.clocked(ctx, j, t, o))
		return
	}
	claim := p.claim(ctx, j)
	if o, next := claimed(claim, p.opts.Policy); !next {
		d.Release()
		then(o)
		return
	}
	p.attempt(ctx, j, t, d, claim, s, then)
}

// judge decides the outcome of the job's attempt (j.res).
func (p *Pipeline) judge(ctx context.Context, j *job, t *webhook.Target) Outcome {
	o := p.clocked(ctx, j, t, judged(&j.res, j.st, p.opts.Policy))
	if o.Kind == DeadLettered && o.Reason == dlq.ReasonRetriesExhausted &&
		p.opts.Dedupe != nil && p.mayBeDelivered(j) && p.opts.Dedupe.Delivered(ctx, dedupeKey(j.ev, j.st)) {
		// Another copy of the event, left by a crash, was delivered.
		o = Outcome{Kind: Duplicate, Reason: dupExhausted, Attempt: o.Attempt}
	}
	return o
}

// routed decides from the config lookup whether the event goes on to an
// attempt (next) or what becomes of it.
func routed(ev *event.Event, t *webhook.Target, lookupErr error) (o Outcome, next bool) {
	switch {
	case !event.Deliverable(ev.Status):
		return skipped(webhook.SkipStatus), false
	case errors.Is(lookupErr, configstore.ErrNotFound):
		return skipped(webhook.SkipNoConfig), false
	case errors.Is(lookupErr, configstore.ErrCorrupt):
		return deadLettered(dlq.ReasonEndpointInvalid, "config_unusable"), false
	case lookupErr != nil:
		return abandoned, false // ctx ended while Redis was unavailable
	case !t.Config.Enabled:
		return deadLettered(dlq.ReasonEndpointDisabled, "config_disabled"), false
	}
	if reason := t.Config.SkipReason(ev.Channel, ev.CampaignID); reason != "" {
		return skipped(reason), false
	}
	return Outcome{}, true
}

// admitted decides from admission control's answer whether the attempt
// goes now (next) or the event is deferred: until the breaker's open period
// ends, or by the schedule's delay for its deferral count while the
// endpoint is busy, and up to half as long again. The spread keeps the
// events deferred during one open period (all told to wait until it ends)
// from coming back together, a burst the other tenants would feel.
// Deferrals do not use up the retry schedule, but an event is deferred for
// at most the schedule's span (its sum); after that it is dead-lettered.
func admitted(d admission.Decision, st *header.Retry, pol retry.Policy, now time.Time) (o Outcome, next bool) {
	var reason string
	var delay time.Duration
	switch d.Answer {
	case admission.Open:
		reason, delay = deferCircuitOpen, d.Until.Sub(now)
	case admission.Busy:
		reason, delay = deferEndpointBusy, pol.Schedule[min(st.Deferrals, len(pol.Schedule)-1)]
	default:
		return Outcome{}, true
	}
	if st.Deferrals > 0 && now.Sub(st.DeferredSince) >= pol.Span() {
		return deadLettered(dlq.ReasonRetriesExhausted, reason), false
	}
	delay = max(delay, 0)
	delay += rand.N(delay/2 + 1)
	return Outcome{Kind: Deferred, Reason: reason, Tier: pol.TierFor(delay), After: delay}, false
}

// claimed decides from the dedupe claim whether the attempt goes (next):
// an event delivered already is a Duplicate; one whose claim another
// attempt has goes back to the first retry tier, and is checked again once
// that attempt ends (or its claim expires, ClaimTTL, if its instance
// crashed). That wait is not bounded by the schedule's span.
func claimed(c dedupe.Claim, pol retry.Policy) (o Outcome, next bool) {
	switch c.State {
	case dedupe.AlreadyDelivered:
		return Outcome{Kind: Duplicate, Reason: dupAlready}, false
	case dedupe.InFlight:
		delay := pol.Schedule[0]
		return Outcome{Kind: Deferred, Reason: deferInFlight, Tier: pol.TierFor(delay), After: delay}, false
	}
	return Outcome{}, true
}

// judged decides from an attempt's result, already counted in st (see
// attempt), what becomes of the event. The status rules are deliver's;
// this is what each verdict means for the record.
func judged(res *deliver.Result, st *header.Retry, pol retry.Policy) Outcome {
	var o Outcome
	switch res.Verdict {
	case deliver.Aborted:
		return abandoned
	case deliver.Delivered:
		o = Outcome{Kind: Delivered}
	case deliver.Retry:
		if tier, delay, ok := pol.Next(st.Attempts, res.RetryAfter); ok {
			o = Outcome{Kind: Retried, Tier: tier, After: delay}
		} else {
			o = deadLettered(dlq.ReasonRetriesExhausted, "")
		}
	case deliver.Unreachable:
		o = deadLettered(dlq.ReasonEndpointInvalid, "")
	default: // deliver.Reject, deliver.Gone (clocked marks the config to be disabled)
		o = deadLettered(dlq.ReasonRejected, "")
	}
	o.Attempt = res
	return o
}

// decode parses the record and sets the job's event and delivery state:
// fresh for an input record, from the headers for a retry record. The
// state is set even when the event is invalid, so the dead letter carries
// its id.
func (p *Pipeline) decode(j *job) error {
	r := j.rec
	st := j.state
	var headerID string // a replay's; any sender can set it too
	if st == nil {
		st = &header.Retry{Source: header.Source(r.Topic, r.Partition, r.Offset), OriginTime: r.Timestamp}
		headerID = header.Get(r.Headers, header.WebhookID)
		if event.IsEventID(headerID) {
			st.WebhookID = headerID
		}
	}
	j.st = st
	st.RecoverJob = header.Get(r.Headers, header.RecoverJob)
	readReplayHistory(r, st)
	if j.badState != nil {
		return j.badState
	}
	ev, err := event.Parse(r.Value)
	if err == nil {
		if ev.ID != "" {
			st.WebhookID = ev.ID
		}
		if headerID != "" && !event.IsEventID(headerID) {
			err = &event.InvalidError{Reason: "webhook_id", Field: header.WebhookID,
				Message: "the record's webhook-id header is not a valid eventId (^[A-Za-z0-9._:-]{1,128}$)"}
		}
	}
	if st.WebhookID == "" {
		st.WebhookID = event.DeriveID(r.Topic, r.Partition, r.Offset)
	}
	if err != nil {
		return err
	}
	j.ev = ev
	return nil
}

// readReplayHistory takes the attempts made before a replay from the
// headers the replay added (they are forwarded to retry records too).
func readReplayHistory(r *kgo.Record, st *header.Retry) {
	if len(r.Headers) == 0 { // a fresh input record: nothing to parse (nor errors to allocate)
		return
	}
	if n, err := strconv.Atoi(header.Get(r.Headers, header.ReplayPriorAttempts)); err == nil && n > 0 {
		st.PriorAttempts = n
	}
	if st.FirstAttemptAt.IsZero() {
		if t, err := header.ParseTime(header.Get(r.Headers, header.ReplayFirstAttemptAt)); err == nil {
			st.FirstAttemptAt = t
		}
	}
}

// lookup asks the config store, waiting out Redis outages, a Redis that
// is being rebuilt and secrets sealed with a key this instance lacks: none
// is a reason to skip or dead-letter an event. It returns ctx's error if
// ctx ends first.
func (p *Pipeline) lookup(ctx context.Context, ev *event.Event) (*webhook.Target, error) {
	if !event.Deliverable(ev.Status) {
		return nil, nil // routed skips it: no config needed
	}
	wait := 100 * time.Millisecond
	for {
		t, err := p.configs.Lookup(ctx, ev.Org, ev.SandboxID)
		if err == nil || errors.Is(err, configstore.ErrNotFound) || errors.Is(err, configstore.ErrCorrupt) {
			return t, err
		}
		p.metrics.configUnavailable.Inc()
		p.log.Debug("config lookup unavailable; the event waits", "org", ev.Org, "sandbox", ev.SandboxID, "error", err, "retry_in", wait)
		if !backoff.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// claim claims the event's key for this attempt if it may have been
// delivered already (see mayBeDelivered); without dedupe, or for an event
// that cannot have been, the answer is Unknown and the attempt goes ahead.
func (p *Pipeline) claim(ctx context.Context, j *job) dedupe.Claim {
	if p.opts.Dedupe == nil || !p.mayBeDelivered(j) {
		return dedupe.Claim{State: dedupe.Unknown}
	}
	return p.opts.Dedupe.Claim(ctx, dedupeKey(j.ev, j.st), p.opts.ClaimTTL)
}

// attempt renders, signs and sends the event; once it is answered (on this
// goroutine or on the one that waited, see Sender), it sets j.res, counts
// the attempt in the job's state, ends the claim if it did not deliver (the
// next attempt need not wait for it), tells admission control how the
// endpoint answered and then frees the endpoint's place d, so that the
// report comes before the next attempt to the endpoint may start, and
// calls then with the outcome judged from the answer.
//
// An attempt that holds a delivery slot is counted in attempts while it
// runs (see slowAttempts): a parked job handed its endpoint's place may go
// on without one, and must not raise the slots' floor.
func (p *Pipeline) attempt(ctx context.Context, j *job, t *webhook.Target, d admission.Decision, claim dedupe.Claim, s *slot, then func(Outcome)) {
	sctx, span := p.attemptSpan(ctx, j, t)
	inSlot := s.delivery
	var began int64
	if inSlot {
		began = p.attempts.start(time.Now())
	}
	body := j.ev.Body(make([]byte, 0, len(j.ev.Raw)+32))
	p.sender.Start(sctx, t, j.st.WebhookID, body, func(res deliver.Result) {
		if inSlot {
			p.attempts.end(began)
		}
		endAttempt(span, &res)
		s.trade()
		if res.Verdict != deliver.Delivered && p.opts.Dedupe != nil {
			p.opts.Dedupe.Release(ctx, dedupeKey(j.ev, j.st), claim)
		}
		j.res = res
		if res.Verdict != deliver.Aborted {
			st := j.st
			st.Attempts++
			if st.FirstAttemptAt.IsZero() {
				st.FirstAttemptAt = time.Now()
			}
			st.LastStatus, st.LastError = res.Status, res.Class
			j.breaker = p.report(ctx, j.ev, t, res)
		}
		d.Release()
		then(p.judge(ctx, j, t))
	})
}

// dedupeKey names one event for duplicate suppression: its tenant, the
// timestamp of the input record it came from (retry records carry it) and
// its webhook-id. Every copy of an event has the same key; two events that
// share an eventId in different tenants, or a derived id after a topic was
// recreated, do not. A recovery job's copy has a key of its own (the job
// id appended): the explicit recovery is delivered once more, once.
func dedupeKey(ev *event.Event, st *header.Retry) string {
	k := ev.Org + "/" + ev.SandboxID + "/" + strconv.FormatInt(st.OriginTime.UnixMilli(), 10) + "/" + st.WebhookID
	if st.RecoverJob != "" {
		k += "/" + st.RecoverJob
	}
	return k
}

// mayBeDelivered reports whether the record's event may have been
// delivered already, so that the dedupe check is worth a Redis round trip:
// it was read before (an earlier owner of the partition may have processed
// it), or it is a retry, replayed or recovered record, whose event may have been
// delivered through a re-read of its original. An input record produced
// after this member got its partition cannot have been.
func (p *Pipeline) mayBeDelivered(j *job) bool {
	return j.state != nil || j.badState != nil || j.part.MayBeReread(j.rec.Offset) ||
		header.Get(j.rec.Headers, header.ReplayJob) != "" || header.Get(j.rec.Headers, header.RecoverJob) != ""
}

var (
	errRevoked  = errors.New("partition revoked")
	errDraining = errors.New("draining")
	errSlow     = errors.New("endpoint slow")
)

// admit asks admission control whether the attempt may go now. While the
// endpoint has its in-flight share taken, the job waits its turn for a
// place: parked (without its delivery slot) if there is room, or else with
// its slot unless the endpoint is slow (see admission.Controller.Slow). An
// endpoint that is busy but not slow frees places as fast as any delivery
// frees a slot, so waiting for it costs the others nothing, and fetching
// slows down to its pace (a single busy tenant is not deferred); a slow
// one's events are deferred (admitted decides so from the Busy answer),
// and it takes no slots beyond its in-flight share. ok is false if the job
// is to be abandoned: the drain started, or its partition was revoked
// meanwhile.
func (p *Pipeline) admit(ctx context.Context, j *job, s *slot, ep string) (d admission.Decision, ok bool) {
	if p.opts.Admission == nil {
		return admission.Decision{Answer: admission.Go, Release: func() {}}, true
	}
	d = p.opts.Admission.Admit(ctx, ep)
	switch {
	case d.Answer != admission.Busy:
		return d, true
	case p.parking.enter(ep):
		s.release()
		waited, err := p.waitTurn(ctx, j, ep, time.Second, func() bool { return false })
		p.parking.leave(ep)
		if err != nil {
			return d, false
		}
		s.take()
		return waited, true
	case !p.opts.Admission.Slow(ep):
		slow := func() bool { return p.opts.Admission.Slow(ep) }
		switch waited, err := p.waitTurn(ctx, j, ep, slowCheck, slow); {
		case err == nil:
			return waited, true
		case !errors.Is(err, errSlow):
			return d, false
		}
	}
	return d, !p.slots.isDraining()
}

// slowCheck is how often a job waiting with its slot checks that the
// endpoint has not become slow.
const slowCheck = 100 * time.Millisecond

// waitTurn waits for the endpoint's place (see Admitter.Wait) until ctx
// ends or the drain starts (errDraining), the job's partition is revoked
// (errRevoked) or giveUp says so (errSlow), the last two checked every
// interval.
func (p *Pipeline) waitTurn(ctx context.Context, j *job, ep string, every time.Duration, giveUp func() bool) (admission.Decision, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.slots.drain:
				cancel(errDraining)
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
// answer or none is a failure; any other answer shows it is up. It returns
// the breaker's transition, if the answer caused one.
func (p *Pipeline) report(ctx context.Context, ev *event.Event, t *webhook.Target, res deliver.Result) string {
	if p.opts.Admission == nil {
		return ""
	}
	switch res.Verdict {
	case deliver.Retry:
		if until, opened := p.opts.Admission.Failure(ctx, t.Endpoint); opened {
			p.log.Warn("circuit breaker opened: no attempts to this endpoint until it ends",
				"org", ev.Org, "sandbox", ev.SandboxID, "until", until.UTC().Format(time.RFC3339), "error", res.Class)
			return breakerOpened
		}
	case deliver.Delivered, deliver.Reject, deliver.Gone:
		if p.opts.Admission.Success(ctx, t.Endpoint) {
			p.log.Info("circuit breaker closed: the endpoint answers again", "org", ev.Org, "sandbox", ev.SandboxID)
			return breakerClosed
		}
	}
	return ""
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
