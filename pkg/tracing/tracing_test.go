package tracing

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestEnabled(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		on   bool
		err  string
	}{
		{"nothing set: off", nil, false, ""},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true, ""},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true, ""},
		{"exporter otlp, default endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"exporter OTLP, any case", map[string]string{"OTEL_TRACES_EXPORTER": " OTLP "}, true, ""},
		{"exporter none beats an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false, ""},
		{"SDK disabled beats everything", map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false, ""},
		{"SDK disabled false", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true, ""},
		{"http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true, ""},
		{"grpc refused", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\""},
		{"traces grpc refused", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, false, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{"grpc while off is no matter", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, ""},
		{"other exporter refused", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, "OTEL_TRACES_EXPORTER=\"zipkin\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			on, err := Enabled(func(k string) string { return c.env[k] })
			if on != c.on || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("Enabled = %v, %v; want %v, error with %q", on, err, c.on, c.err)
			}
		})
	}
}

// Off, New builds nothing.
func TestNewOff(t *testing.T) {
	p, err := New(context.Background(), Options{Getenv: func(string) string { return "" }})
	if p != nil || err != nil {
		t.Fatalf("New = %v, %v; want nil, nil", p, err)
	}
}

// On, spans reach an OTLP/HTTP collector at the latest when Shutdown
// flushes them, under service.name feedbackd unless OTEL_SERVICE_NAME
// says otherwise.
func TestNewExportsToTheCollector(t *testing.T) {
	for _, c := range []struct{ serviceName, want string }{{"", "feedbackd"}, {"feedbackd-eu", "feedbackd-eu"}} {
		t.Run(c.want, func(t *testing.T) {
			col := testenv.StartOTLP(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
			t.Setenv("OTEL_SERVICE_NAME", c.serviceName)
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			p, err := New(context.Background(), Options{Version: "1.2.3"})
			if err != nil || p == nil {
				t.Fatalf("New = %v, %v", p, err)
			}
			if p.Endpoint() != col.URL {
				t.Errorf("Endpoint %q, want %q", p.Endpoint(), col.URL)
			}
			_, span := p.Tracer().Start(context.Background(), "process feedback.sent")
			span.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := col.Spans()
			if len(spans) != 1 || spans[0].GetName() != "process feedback.sent" {
				t.Fatalf("collector got %d spans (%v), want the one ended", len(spans), spans)
			}
			if got := hex.EncodeToString(spans[0].GetTraceId()); got != span.SpanContext().TraceID().String() {
				t.Errorf("trace id %s, want %s", got, span.SpanContext().TraceID())
			}
			if r := spans[0].Resource; r["service.name"] != c.want || r["service.version"] != "1.2.3" {
				t.Errorf("resource %v, want service.name %s and service.version 1.2.3", r, c.want)
			}
		})
	}
}

// The endpoint logged is scheme and host: never a path or credentials.
func TestEndpointHidesPathAndCredentials(t *testing.T) {
	got := endpoint(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://u:secret@otel.example:4318/v1/traces?k=v"}[k]
	})
	if got != "https://otel.example:4318" {
		t.Errorf("endpoint %q", got)
	}
}

func TestExtractAndInject(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hs := func(kv ...string) []kgo.RecordHeader {
		var out []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	for _, c := range []struct {
		name    string
		headers []kgo.RecordHeader
		valid   bool
	}{
		{"traceparent", hs("x", "1", "traceparent", parent, "tracestate", "v=1"), true},
		{"any case", hs("Traceparent", parent), true},
		{"none", hs("x", "1"), false},
		{"malformed", hs("traceparent", "00-zz-00f067aa0ba902b7-01"), false},
		{"all-zero trace id", hs("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(Extract(context.Background(), c.headers))
			if sc.IsValid() != c.valid {
				t.Fatalf("extracted %v valid %v, want %v", sc, sc.IsValid(), c.valid)
			}
			if c.valid && (sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !sc.IsRemote() || !sc.IsSampled()) {
				t.Errorf("extracted %v", sc)
			}
		})
	}

	tid, _ := trace.TraceIDFromHex("11111111111111111111111111111111")
	sid, _ := trace.SpanIDFromHex("2222222222222222")
	ours := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	got := Inject(ours, hs("x", "1", "traceparent", parent, "Tracestate", "v=1", "y", "2"))
	want := "x=1 y=2 traceparent=00-11111111111111111111111111111111-2222222222222222-01"
	var s []string
	for _, h := range got {
		s = append(s, h.Key+"="+string(h.Value))
	}
	if strings.Join(s, " ") != want {
		t.Errorf("Inject = %v, want %s (the old trace headers replaced, the others kept in order)", s, want)
	}
	if got := Inject(trace.SpanContext{}, hs("traceparent", parent, "x", "1")); len(got) != 1 || got[0].Key != "x" {
		t.Errorf("Inject of no span context = %v, want the trace headers dropped", got)
	}
}
