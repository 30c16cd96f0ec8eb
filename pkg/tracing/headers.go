package tracing

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace-context header names, as written on Kafka records (lower case,
// as the propagator and every Kafka instrumentation write them).
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
)

var traceContext propagation.TraceContext

// Extract returns ctx carrying the remote span context of the record's
// traceparent (and tracestate) headers, or ctx itself if there is none or
// it is malformed: a new trace then starts.
func Extract(ctx context.Context, headers []kgo.RecordHeader) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, recordHeaders{h: &headers})
}

// Inject replaces the trace-context headers in headers with sc's (none if
// sc is invalid) and returns the result; the other headers keep their
// order. headers may be modified in place.
func Inject(sc trace.SpanContext, headers []kgo.RecordHeader) []kgo.RecordHeader {
	out := headers[:0]
	for _, h := range headers {
		if !isTraceHeader(h.Key) {
			out = append(out, h)
		}
	}
	if sc.IsValid() {
		traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), recordHeaders{h: &out})
	}
	return out
}

func isTraceHeader(key string) bool {
	return strings.EqualFold(key, TraceParent) || strings.EqualFold(key, TraceState)
}

// recordHeaders is a propagation.TextMapCarrier over a record's headers.
// Get matches names case-insensitively (Kafka's are case-sensitive, but a
// sender may have written Traceparent); Set appends.
type recordHeaders struct{ h *[]kgo.RecordHeader }

var _ propagation.TextMapCarrier = recordHeaders{}

func (c recordHeaders) Get(key string) string {
	for _, h := range *c.h {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

func (c recordHeaders) Set(key, value string) {
	*c.h = append(*c.h, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (c recordHeaders) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}
