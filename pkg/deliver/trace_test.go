package deliver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// The attempt's span context (the pipeline's POST span, when tracing) goes
// out as traceparent and tracestate, replacing any the config has; with
// none in the context nothing is added and a config's own headers go out.
func TestSendCarriesTheAttemptsTraceContext(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("feedbackd=x,vendor=y")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	custom := map[string]string{"Traceparent": "00-11111111111111111111111111111111-2222222222222222-01", "Tracestate": "config=z", "X-Tenant": "t"}
	cases := []struct {
		name           string
		sc             trace.SpanContext
		headers        map[string]string
		parent, tstate string
	}{
		{"sampled span", sampled, nil, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "feedbackd=x,vendor=y"},
		{"unsampled span", unsampled, nil, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"span replaces the config's", sampled, custom, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "feedbackd=x,vendor=y"},
		{"span without tracestate drops the config's", unsampled, custom, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"no span", trace.SpanContext{}, nil, "", ""},
		{"no span: the config's go out", trace.SpanContext{}, custom, custom["Traceparent"], "config=z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := make(chan http.Header, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
			defer srv.Close()
			tg, _ := target(t, srv.URL+"/hook?q=1", c.headers)
			ctx := context.Background()
			if c.sc.IsValid() {
				ctx = trace.ContextWithSpanContext(ctx, c.sc)
			}
			if r := devClient().Send(ctx, tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
				t.Fatalf("verdict %v class %q", r.Verdict, r.Class)
			}
			h := <-got
			if v := h.Values("Traceparent"); len(v) > 1 || h.Get("Traceparent") != c.parent {
				t.Errorf("traceparent %q, want %q", v, c.parent)
			}
			if v := h.Values("Tracestate"); len(v) > 1 || h.Get("Tracestate") != c.tstate {
				t.Errorf("tracestate %q, want %q", v, c.tstate)
			}
			if c.headers != nil && h.Get("X-Tenant") != "t" {
				t.Error("the config's other headers are gone")
			}
		})
	}
}

// BenchmarkSendTraced is BenchmarkSend with a span in the context: what
// writing traceparent and tracestate costs per attempt.
func BenchmarkSendTraced(b *testing.B) {
	tg, body := benchReceiver(b)
	c := New(Options{Timeout: 5e9, Guard: devClient().opts.Guard, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: 256})
	defer c.Close()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	benchAttempts(b, func(context.Context) Result { return c.Send(ctx, tg, "msg_2b6c1f0e9d8a", body) })
}
