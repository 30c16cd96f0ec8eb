package pipeline

import (
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/tracing"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Tracing (Options.Tracer) gives each job a span tree, in the trace of the
// record's traceparent header if it has one (else a new trace):
//
//	process <topic>   consumer span: the job, from its slot to its settle
//	├── route         the config lookup
//	├── POST          client span: the attempt (its context is the webhook's traceparent)
//	└── settle        carrying out the outcome (retry record, dead letter, ...)
//
// The retry record or dead letter it writes carries the process span's
// context as its traceparent, so the next attempt's spans join the trace.
// Attributes hold no URL path or query, no header and no secret: only the
// endpoint's host and port, tenant ids, ids and classified errors. With no
// Tracer none of this runs: a nil check per stage, no allocation.

// Span attributes of feedbackd's own (the others are OpenTelemetry's
// semantic conventions).
const (
	attrWebhookID = attribute.Key("feedbackd.webhook_id")
	attrOrg       = attribute.Key("feedbackd.org")
	attrSandbox   = attribute.Key("feedbackd.sandbox")
	attrChannel   = attribute.Key("feedbackd.channel")
	attrStatus    = attribute.Key("feedbackd.feedback_status")
	attrAttempt   = attribute.Key("feedbackd.attempt")
	attrOutcome   = attribute.Key("feedbackd.outcome")
	attrReason    = attribute.Key("feedbackd.reason")
	attrRetryIn   = attribute.Key("feedbackd.retry_in_ms")
	attrRoute     = attribute.Key("feedbackd.route")
)

// run is a job on its worker: process decides its outcome and settle
// carries it out, each in its span when tracing. settle runs where process
// calls it: on the worker, or on the goroutine that waited for the
// attempt's answer.
func (p *Pipeline) run(ctx context.Context, j *job, s *slot) {
	if p.tracer == nil {
		p.process(ctx, j, s, func(o Outcome) { p.settle(ctx, j, o, s) })
		return
	}
	// A new variable, not ctx again: assigned twice, ctx would be captured
	// by reference by the closure above, an allocation per job.
	tctx, span := p.startProcessSpan(ctx, j)
	p.process(tctx, j, s, func(o Outcome) { p.settleTraced(tctx, span, j, o, s) })
}

// startProcessSpan starts the job's process span.
func (p *Pipeline) startProcessSpan(ctx context.Context, j *job) (context.Context, trace.Span) {
	r := j.rec
	ctx, span := p.tracer.Start(tracing.Extract(ctx, r.Headers), "process "+r.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(r.Topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(r.Partition))),
			semconv.MessagingKafkaOffset(int(r.Offset)),
			semconv.MessagingConsumerGroupName(p.opts.Group),
		))
	j.span = span
	return ctx, span
}

// settleTraced is settle in its span, under the job's process span, which
// it ends with the outcome's attributes.
func (p *Pipeline) settleTraced(ctx context.Context, span trace.Span, j *job, o Outcome, s *slot) {
	defer span.End()
	sctx, settling := p.tracer.Start(ctx, "settle")
	p.settle(sctx, j, o, s)
	defer settling.End()
	if !span.IsRecording() { // sampled out: the attributes would be dropped
		return
	}
	if j.st != nil {
		span.SetAttributes(attrWebhookID.String(j.st.WebhookID))
	}
	if ev := j.ev; ev != nil {
		span.SetAttributes(attrOrg.String(ev.Org), attrSandbox.String(ev.SandboxID), attrChannel.String(ev.Channel), attrStatus.String(ev.Status))
	}
	done := j.settledAs
	outcome := []attribute.KeyValue{attrOutcome.String(done.Kind.String())}
	if done.Reason != "" {
		outcome = append(outcome, attrReason.String(done.Reason))
	}
	if done.Kind == Retried || done.Kind == Deferred {
		outcome = append(outcome, attrRetryIn.Int64(done.After.Milliseconds()))
	}
	settling.SetAttributes(outcome...)
	span.SetAttributes(outcome...)
	if done.Kind == DeadLettered || done.Kind == DeadLetterLost {
		span.SetStatus(codes.Error, done.Kind.String()+": "+done.Reason)
	}
}

// route is the route stage's config lookup, in a span when tracing.
func (p *Pipeline) route(ctx context.Context, ev *event.Event) (*webhook.Target, error) {
	if p.tracer == nil {
		return p.lookup(ctx, ev)
	}
	ctx, span := p.tracer.Start(ctx, "route", trace.WithAttributes(attrOrg.String(ev.Org), attrSandbox.String(ev.SandboxID)))
	defer span.End()
	t, err := p.lookup(ctx, ev)
	if !span.IsRecording() {
		return t, err
	}
	result := "found"
	switch {
	case t == nil && err == nil:
		result = "not_needed" // a status that is not delivered
	case errors.Is(err, configstore.ErrNotFound):
		result = "not_found"
	case errors.Is(err, configstore.ErrCorrupt):
		result = "unusable"
	case err != nil:
		result = "unavailable"
	}
	span.SetAttributes(attrRoute.String(result))
	return t, err
}

// attemptSpan starts the attempt's client span: deliver sends its context
// as the webhook's traceparent. Without tracing it returns ctx and nil.
// The span names the endpoint by host and port only.
func (p *Pipeline) attemptSpan(ctx context.Context, j *job, t *webhook.Target) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodPost, attrAttempt.Int(j.st.PriorAttempts + j.st.Attempts + 1)}
	if u := t.URL; u != nil {
		attrs = append(attrs, semconv.URLScheme(u.Scheme), semconv.ServerAddress(u.Hostname()))
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			port = map[string]int{"https": 443, "http": 80}[u.Scheme]
		}
		attrs = append(attrs, semconv.ServerPort(port))
	}
	return p.tracer.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endAttempt ends the attempt's span (nil: not tracing) with its answer.
func endAttempt(span trace.Span, res *deliver.Result) {
	if span == nil {
		return
	}
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if res.Status != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(res.Status))
	}
	if res.Verdict != deliver.Delivered {
		span.SetAttributes(semconv.ErrorTypeKey.String(res.Class))
		span.SetStatus(codes.Error, res.Class)
	}
}

// carryTrace makes rec, a retry record or dead letter of j, carry the
// job's trace context (the process span's) instead of the one its record
// came with, or none: the next attempt's spans are its children.
func (p *Pipeline) carryTrace(j *job, rec *kgo.Record) *kgo.Record {
	if j.span != nil {
		rec.Headers = tracing.Inject(j.span.SpanContext(), rec.Headers)
	}
	return rec
}
