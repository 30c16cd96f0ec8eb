package pipeline

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/webhook"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// The sender's trace: what an upstream sender's instrumentation writes on
// the input record.
const (
	senderTraceID    = "0af7651916cd43dd8448eb211c80319c"
	senderParent     = "00-" + senderTraceID + "-b7ad6b7169203331-01"
	senderTraceState = "vendor=opaque"
)

// secretURL is the target's URL: nothing of its path, query or userinfo
// may reach a span.
const secretURL = "https://user:pass@receiver.example:8443/hook/path-secret?token=s3cret"

// tracedSender answers with answers in turn (the last one again once they
// run out) and records the span context of each attempt's ctx: what
// package deliver writes as the webhook's traceparent.
type tracedSender struct {
	mu      sync.Mutex
	answers []deliver.Result
	seen    []trace.SpanContext
}

func (s *tracedSender) Start(ctx context.Context, _ *webhook.Target, _ string, _ []byte, done func(deliver.Result)) {
	s.mu.Lock()
	s.seen = append(s.seen, trace.SpanContextFromContext(ctx))
	r := s.answers[min(len(s.seen), len(s.answers))-1]
	s.mu.Unlock()
	go done(r)
}

func (s *tracedSender) contexts() []trace.SpanContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]trace.SpanContext(nil), s.seen...)
}

// tracedRun runs a pipeline on a kfake broker with tracer (nil: off) and a
// 100 ms retry tier, produces one bounce event with headers, and returns
// the broker's seeds; the pipeline stops when the test ends.
func tracedRun(t *testing.T, tracer trace.Tracer, send *tracedSender, headers ...kgo.RecordHeader) []string {
	t.Helper()
	pol := retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "feedback.bounce", retry.Topic("feedback.retry", 100*time.Millisecond), "feedback.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := c.ListenAddrs()
	u, _ := url.Parse(secretURL)
	configs := configsFunc(func(org, sandbox string) (*webhook.Target, error) {
		return &webhook.Target{Config: webhook.Config{Org: org, Sandbox: webhook.Sandbox{ID: sandbox}, URL: secretURL, Channels: []string{"email"},
			Campaigns: []string{webhook.AllCampaigns}, Enabled: true}, URL: u, Endpoint: "ep-1"}, nil
	})
	p, err := New([]kgo.Opt{kgo.SeedBrokers(seeds...)}, configs, send, Options{Group: "trace", InputTopics: []string{"feedback.bounce"},
		RetryPrefix: "feedback.retry", DLQTopic: "feedback.dlq", Policy: pol, Concurrency: 4, ShutdownTimeout: time.Second, Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "feedback.bounce", Value: eventWith("bounce"), Headers: headers}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return seeds
}

func newTracer() (trace.Tracer, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test"), exp
}

// ended waits for n ended spans named name and returns every span ended.
func ended(t *testing.T, exp *tracetest.InMemoryExporter, name string, n int) tracetest.SpanStubs {
	t.Helper()
	var spans tracetest.SpanStubs
	testenv.Eventually(t, "spans ended", 10*time.Second, func() bool {
		spans = exp.GetSpans()
		return len(named(spans, name)) >= n
	})
	return spans
}

func named(spans tracetest.SpanStubs, name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// A record with a traceparent is continued: every span of its deliveries,
// the retry's too, is in the sender's trace; each attempt's context (the
// webhook's traceparent) is its POST span; the retry's process span is a
// child of the first one (the retry record carries that span's context);
// no attribute holds the URL's path, query or credentials.
func TestTracingContinuesTheRecordsTrace(t *testing.T) {
	tracer, exp := newTracer()
	send := &tracedSender{answers: []deliver.Result{
		{Verdict: deliver.Retry, Status: 503, Class: "http_503"},
		{Verdict: deliver.Delivered, Status: 200},
	}}
	tracedRun(t, tracer, send, kgo.RecordHeader{Key: "traceparent", Value: []byte(senderParent)},
		kgo.RecordHeader{Key: "tracestate", Value: []byte(senderTraceState)})
	spans := ended(t, exp, "process feedback.retry.100ms", 1)

	for _, s := range spans {
		if got := s.SpanContext.TraceID().String(); got != senderTraceID {
			t.Errorf("span %q in trace %s, want the sender's %s", s.Name, got, senderTraceID)
		}
		for _, a := range s.Attributes {
			v := a.Value.Emit()
			for _, secret := range []string{"/hook", "path-secret", "token", "s3cret", "user", "pass"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s = %q holds %q", s.Name, a.Key, v, secret)
				}
			}
		}
	}
	first, second := named(spans, "process feedback.bounce"), named(spans, "process feedback.retry.100ms")
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("process spans: %d of the input record, %d of the retry; want 1 and 1", len(first), len(second))
	}
	in, re := first[0], second[0]
	if in.Parent.SpanID().String() != "b7ad6b7169203331" || !in.Parent.IsRemote() {
		t.Errorf("input record's process span has parent %s (remote %v), want the sender's span b7ad6b7169203331", in.Parent.SpanID(), in.Parent.IsRemote())
	}
	if re.Parent.SpanID() != in.SpanContext.SpanID() {
		t.Errorf("retry's process span has parent %s, want the first process span %s", re.Parent.SpanID(), in.SpanContext.SpanID())
	}
	if in.SpanKind != trace.SpanKindConsumer {
		t.Errorf("process span kind %v, want consumer", in.SpanKind)
	}
	if got := in.SpanContext.TraceState().String(); got != senderTraceState {
		t.Errorf("tracestate %q, want the sender's %q", got, senderTraceState)
	}
	for key, want := range map[string]string{
		"messaging.system": "kafka", "messaging.destination.name": "feedback.bounce", "messaging.destination.partition.id": "0",
		"messaging.kafka.offset": "0", "messaging.operation.type": "process", "messaging.consumer.group.name": "trace",
		"feedbackd.webhook_id": "evt-1", "feedbackd.org": "orgA", "feedbackd.sandbox": "prod", "feedbackd.outcome": "retried",
	} {
		if v, ok := attr(in, key); !ok || v.Emit() != want {
			t.Errorf("process span %s = %q, want %q", key, v.Emit(), want)
		}
	}
	if v, _ := attr(re, "feedbackd.outcome"); v.AsString() != "delivered" {
		t.Errorf("retry's outcome %q, want delivered", v.AsString())
	}

	// Children of each process span: route, POST, settle.
	posts := named(spans, "POST")
	for _, ps := range []tracetest.SpanStub{in, re} {
		var kids []string
		for _, s := range spans {
			if s.Parent.SpanID() == ps.SpanContext.SpanID() && s.Parent.TraceID() == ps.SpanContext.TraceID() && !strings.HasPrefix(s.Name, "process") {
				kids = append(kids, s.Name)
			}
		}
		if strings.Join(kids, ",") != "route,POST,settle" {
			t.Errorf("children of %q: %v, want route, POST, settle (in that order)", ps.Name, kids)
		}
	}
	if len(posts) != 2 {
		t.Fatalf("%d POST spans, want 2", len(posts))
	}
	seen := send.contexts()
	for i, want := range []struct {
		status int64
		err    bool
	}{{503, true}, {200, false}} {
		s := posts[i]
		if s.SpanKind != trace.SpanKindClient {
			t.Errorf("POST span kind %v, want client", s.SpanKind)
		}
		if v, _ := attr(s, "http.response.status_code"); v.AsInt64() != want.status {
			t.Errorf("attempt %d: status attribute %d, want %d", i+1, v.AsInt64(), want.status)
		}
		if v, _ := attr(s, "server.address"); v.AsString() != "receiver.example" {
			t.Errorf("attempt %d: server.address %q, want the host alone", i+1, v.AsString())
		}
		if v, _ := attr(s, "server.port"); v.AsInt64() != 8443 {
			t.Errorf("attempt %d: server.port %d, want 8443", i+1, v.AsInt64())
		}
		if _, ok := attr(s, "error.type"); ok != want.err {
			t.Errorf("attempt %d: error.type set %v, want %v", i+1, ok, want.err)
		}
		if i < len(seen) && seen[i].SpanID() != s.SpanContext.SpanID() {
			t.Errorf("attempt %d sent with span %s, want its POST span %s", i+1, seen[i].SpanID(), s.SpanContext.SpanID())
		}
	}
}

// A record without a traceparent starts a trace, and its dead letter
// carries it (so does a replay of it, which keeps the dead letter's
// headers).
func TestTracingDeadLetterCarriesTheTrace(t *testing.T) {
	tracer, exp := newTracer()
	send := &tracedSender{answers: []deliver.Result{{Verdict: deliver.Reject, Status: 400, Class: "http_400"}}}
	seeds := tracedRun(t, tracer, send)
	spans := ended(t, exp, "process feedback.bounce", 1)
	ps := named(spans, "process feedback.bounce")[0]
	if ps.Parent.IsValid() {
		t.Errorf("process span of a record without traceparent has parent %s", ps.Parent.SpanID())
	}
	if v, _ := attr(ps, "feedbackd.outcome"); v.AsString() != "dead_lettered" {
		t.Errorf("outcome %q, want dead_lettered", v.AsString())
	}
	tp := header.Get(readOne(t, seeds, "feedback.dlq").Headers, "traceparent")
	want := "00-" + ps.SpanContext.TraceID().String() + "-" + ps.SpanContext.SpanID().String() + "-01"
	if tp != want {
		t.Errorf("dead letter's traceparent %q, want the process span's %q", tp, want)
	}
}

// With no Tracer nothing is traced: the attempt's context has no span
// (deliver writes no traceparent) and the retry record keeps the input
// record's traceparent as it came.
func TestTracingOffPassesHeadersThrough(t *testing.T) {
	send := &tracedSender{answers: []deliver.Result{{Verdict: deliver.Retry, Status: 503, Class: "http_503"}, {Verdict: deliver.Delivered, Status: 200}}}
	seeds := tracedRun(t, nil, send, kgo.RecordHeader{Key: "traceparent", Value: []byte(senderParent)})
	rec := readOne(t, seeds, retry.Topic("feedback.retry", 100*time.Millisecond))
	if got := header.Get(rec.Headers, "traceparent"); got != senderParent {
		t.Errorf("retry record's traceparent %q, want the input record's %q", got, senderParent)
	}
	testenv.Eventually(t, "two attempts", 10*time.Second, func() bool { return len(send.contexts()) == 2 })
	for i, sc := range send.contexts() {
		if sc.IsValid() {
			t.Errorf("attempt %d has a span context with tracing off", i+1)
		}
	}
}

// readOne reads the first record of topic.
func readOne(t *testing.T, seeds []string, topic string) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no record in %s: %v", topic, err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

// BenchmarkRunTraced is BenchmarkRun (outcomes off) with tracing on: every
// span sampled and batched to an exporter that drops them (the SDK's work,
// not the network's), and every span sampled out (OTEL_TRACES_SAMPLER
// always_off: spans are made but not recorded). Tracing off is
// BenchmarkRun/outcomes=off itself.
func BenchmarkRunTraced(b *testing.B) {
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{{"sampled", sdktrace.AlwaysSample()}, {"sampled_out", sdktrace.NeverSample()}} {
		b.Run(c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler), sdktrace.WithBatcher(discard{}))
			defer func() { _ = tp.Shutdown(context.Background()) }()
			benchmarkRun(b, "", func(o *Options) { o.Tracer = tp.Tracer("bench") })
		})
	}
}

// discard is an exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
