package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLP is an OpenTelemetry collector of one test: it takes OTLP/HTTP
// protobuf exports on POST /v1/traces and keeps the spans.
type OTLP struct {
	URL string // for OTEL_EXPORTER_OTLP_ENDPOINT
	mu  sync.Mutex
	got []*tracepb.ResourceSpans
}

// StartOTLP starts the collector on a loopback port; it is closed with the
// test. An export it cannot decode fails the test.
func StartOTLP(t testing.TB) *OTLP {
	t.Helper()
	o := &OTLP{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collectorpb.ExportTraceServiceRequest
		if err == nil && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			err = proto.Unmarshal(body, &req)
		} else if err == nil {
			err = http.ErrNotSupported
		}
		if err != nil {
			t.Errorf("OTLP collector: %s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		o.got = append(o.got, req.ResourceSpans...)
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

// Span is an exported span with its resource's attributes.
type Span struct {
	*tracepb.Span
	Resource map[string]string // string attributes of the resource
}

// Spans returns every span exported so far.
func (o *OTLP) Spans() []Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Span
	for _, rs := range o.got {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, Span{Span: s, Resource: res})
			}
		}
	}
	return out
}
