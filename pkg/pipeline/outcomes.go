package pipeline

import (
	"context"
	"errors"
	"slices"
	"sync"
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
// operational events they caused. It does not wait for the broker: the job
// is finished (job.finish) as settled once the broker acknowledged every
// record (or refused one for good), so that the input offset is marked
// settled only after its outcome is on the topic (at least once); as
// abandoned if ctx ended first. That may happen before publish returns,
// or later on another goroutine. A record the broker refuses for good is
// counted and logged, not retried: it must not hold its partition.
func (p *Pipeline) publish(ctx context.Context, j *job, attempt *deliver.Result, done Outcome) {
	if p.opts.OutcomesTopic == "" && p.opts.Log == nil {
		j.finish(true)
		return
	}
	if p.opts.Log == nil {
		// The records are not kept once encoded: on the stack.
		var records [2]outcome.Record
		b := &outcomeBatch{p: p, ctx: ctx, job: j.unsettled(), wait: outcomeRetryWait}
		b.send(p.encodeOutcomes(b.inline[:0], p.outcomeRecords(records[:0], j, attempt, done)))
		return
	}
	// The records, their Kafka records and the batch share one allocation:
	// this runs once per settled record.
	b := &loggedBatch{outcomeBatch: outcomeBatch{p: p, ctx: ctx, job: j.unsettled(), wait: outcomeRetryWait}}
	recs := p.outcomeRecords(b.records[:0], j, attempt, done)
	var krecs []kgo.Record
	if p.opts.OutcomesTopic != "" {
		krecs = p.encodeOutcomes(b.inline[:0], recs)
	}
	// Added before the job can finish: a drain that has seen every job
	// finished may stop the log (daemon.Run), which writes what it holds.
	ptrs := b.ptrs[:0]
	for i := range recs {
		ptrs = append(ptrs, &recs[i]) // after encoding: the log reads their Value
	}
	p.opts.Log.Add(ptrs)
	if p.opts.OutcomesTopic == "" {
		j.finish(true)
		return
	}
	b.send(krecs)
}

// outcomeRecords appends the job's records to recs: its attempt (if one was
// made), the outcome it settled with, and the operational events they
// caused.
func (p *Pipeline) outcomeRecords(recs []outcome.Record, j *job, attempt *deliver.Result, done Outcome) []outcome.Record {
	now := time.Now().UTC()
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
	return recs
}

func (p *Pipeline) outcomeRecord(j *job, typ string, now time.Time) outcome.Record {
	st := j.st
	r := outcome.Record{Type: typ, Time: now, Instance: p.opts.Instance, WebhookID: st.WebhookID,
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

// A batch whose records the broker failed waits outcomeRetryWait before it
// produces them again, twice as long after each failure, up to
// outcomeRetryMaxWait.
const (
	outcomeRetryWait    = 100 * time.Millisecond
	outcomeRetryMaxWait = 10 * time.Second
)

// outcomesLinger is how long the outcomes producer waits to fill its
// batches: a job is settled only once its records are acknowledged, so the
// wait delays the offset commit (every CommitInterval anyway) and a drain
// by that much, and keeps no slot. Fewer, larger produce requests cost the
// broker less per record.
const outcomesLinger = 50 * time.Millisecond

// newOutcomesClient is the outcomes topic's own producer, so that its
// lingering batches never hold up the retry and dead-letter produces, and
// the broker takes them in a few large requests rather than many small
// ones.
func newOutcomesClient(kafkaOpts []kgo.Opt, opts Options) (*kgo.Client, error) {
	if opts.OutcomesKafka != nil {
		kafkaOpts = opts.OutcomesKafka
	}
	return kgo.NewClient(append(slices.Clone(kafkaOpts),
		kgo.DefaultProduceTopic(opts.OutcomesTopic),
		kgo.ProducerLinger(outcomesLinger),
	)...)
}

// encodeOutcomes appends recs to krecs as records of the outcomes topic,
// in order, and sets each one's Value.
func (p *Pipeline) encodeOutcomes(krecs []kgo.Record, recs []outcome.Record) []kgo.Record {
	// The records are encoded in a scratch buffer, then copied to one of
	// their exact size, which every key and value shares. The records of
	// a job are about one tenant: they share their key.
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	enc := sc.buf[:0]
	var endsOf [8]int
	ends := endsOf[:0] // of each key and value in enc
	for i := range recs {
		if !sameTenant(recs, i) {
			enc = recs[i].AppendKey(enc)
		}
		ends = append(ends, len(enc))
		v, err := sc.enc.AppendJSON(enc, &recs[i])
		if err != nil { // a Record always encodes; counted in case it ever does not
			p.metrics.outcomeErrors.Inc()
		}
		enc = v
		ends = append(ends, len(enc))
	}
	if cap(enc) <= 64<<10 { // a rare long answer's buffer is not kept
		sc.buf = enc
	}
	buf := append([]byte(nil), enc...)
	var key []byte
	start := 0
	for i := range recs {
		if !sameTenant(recs, i) {
			if key = buf[start:ends[2*i]:ends[2*i]]; len(key) == 0 {
				key = nil
			}
		}
		value := buf[ends[2*i]:ends[2*i+1]:ends[2*i+1]]
		start = ends[2*i+1]
		if len(value) == 0 {
			continue
		}
		recs[i].Value = value
		// The Timestamp set spares franz-go a clock reading per record.
		krecs = append(krecs, kgo.Record{Topic: p.opts.OutcomesTopic, Key: key, Value: value, Timestamp: recs[i].Time})
	}
	return krecs
}

// sameTenant reports whether recs[i] is about the tenant recs[i-1] is.
func sameTenant(recs []outcome.Record, i int) bool {
	return i > 0 && recs[i].Org == recs[i-1].Org && recs[i].Sandbox == recs[i-1].Sandbox
}

// scratch is encodeOutcomes' buffer and encoder, pooled: the encoder
// keeps its own.
type scratch struct {
	buf []byte
	enc outcome.Encoder
}

var scratchPool = sync.Pool{New: func() any { return &scratch{buf: make([]byte, 0, 4096)} }}

// outcomeBatch is one job's outcome records on their way to the broker.
// Records the broker fails with a retriable error (franz-go retried them
// already) are produced again after a backoff, until acknowledged, refused
// for good or ctx ends. The job is finished once every record is done: as
// abandoned if ctx ended (or the client closed) first.
type outcomeBatch struct {
	p      *Pipeline
	ctx    context.Context
	job    unsettled     // not the *job: its record, event and answer are not held until the broker answers
	wait   time.Duration // before the next retry
	inline [2]kgo.Record // a job's records, usually

	mu    sync.Mutex
	left  int          // records not answered yet
	again []kgo.Record // records to produce again
	lost  bool         // ctx ended or the client closed
}

// loggedBatch is an outcomeBatch with its records as the delivery log
// takes them (it holds them until it has written them).
type loggedBatch struct {
	outcomeBatch
	records [2]outcome.Record // a job's records, usually
	ptrs    [2]*outcome.Record
}

// send produces recs, which franz-go holds until their promises answer b.
func (b *outcomeBatch) send(recs []kgo.Record) {
	if len(recs) == 0 {
		b.job.finish(true)
		return
	}
	b.mu.Lock()
	b.left = len(recs)
	b.mu.Unlock()
	promise := b.promise
	for i := range recs {
		b.p.outcomes.Produce(b.ctx, &recs[i], promise)
	}
}

// promise runs on franz-go's promise goroutine: it must not block.
func (b *outcomeBatch) promise(r *kgo.Record, err error) {
	p := b.p
	b.mu.Lock()
	switch {
	case err == nil:
		p.metrics.outcomes.Inc()
	case b.ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed):
		b.lost = true
	case permanent(err):
		p.metrics.outcomeErrors.Inc()
		p.log.Error("outcome record refused by the broker; not retried", "topic", p.opts.OutcomesTopic, "error", err)
	default:
		p.metrics.outcomeErrors.Inc()
		b.again = append(b.again, kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value})
	}
	b.left--
	last := b.left == 0
	b.mu.Unlock()
	switch {
	case !last:
	case b.lost:
		b.job.finish(false)
	case len(b.again) == 0:
		b.job.finish(true)
	default:
		go b.retry()
	}
}

// retry produces the failed records again after the backoff.
func (b *outcomeBatch) retry() {
	b.mu.Lock()
	recs := b.again
	b.again = nil
	b.mu.Unlock()
	b.p.log.Warn("outcome records not written; retrying", "topic", b.p.opts.OutcomesTopic, "records", len(recs), "retry_in", b.wait)
	if !backoff.Sleep(b.ctx, b.wait) {
		b.job.finish(false)
		return
	}
	b.wait = min(2*b.wait, outcomeRetryMaxWait)
	b.send(recs)
}
