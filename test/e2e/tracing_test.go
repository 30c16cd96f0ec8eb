package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/test/testenv"
)

// Tracing on through the standard variables, an OTLP collector on
// loopback: the sender's traceparent on the input record is continued to
// the endpoint (each attempt's webhook carries a traceparent in the
// sender's trace, the retry's too), and the spans feedbackd exports (the
// last ones flushed at shutdown) are in that trace, the POST spans being
// the ones the endpoint was told of.
func TestTracingFromSenderToEndpoint(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	col := testenv.StartOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	h := start(t, nil)
	rc := newReceiver(t, func(n int, _ delivery) int {
		if n == 1 {
			return 503
		}
		return 200
	})
	secret := h.createWebhook(webhookConfig("orgT", "sbT", rc.URL+"/hook?token=q"))
	b, _ := json.Marshal(newEvent("evt-trace", "orgT", "sbT", "email", "bounce"))
	err := h.producer.ProduceSync(context.Background(), &kgo.Record{Topic: "feedback.bounce", Value: b, Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-" + traceID + "-00f067aa0ba902b7-01")},
	}}).FirstErr()
	if err != nil {
		t.Fatal(err)
	}
	h.eventually("the retry delivered", 20*time.Second, func() bool { return rc.count() >= 2 })

	var told []string // span ids the endpoint got in traceparent
	for i, d := range rc.deliveries() {
		verify(t, secret, d)
		parts := strings.Split(d.header.Get("traceparent"), "-")
		if len(parts) != 4 || parts[0] != "00" || parts[1] != traceID || parts[3] != "01" {
			t.Fatalf("delivery %d: traceparent %q, want one in the sender's trace %s", i+1, d.header.Get("traceparent"), traceID)
		}
		told = append(told, parts[2])
	}
	if told[0] == told[1] || told[0] == "00f067aa0ba902b7" {
		t.Errorf("attempts told span ids %v: want one of each attempt, not the sender's", told)
	}

	h.stopDaemon() // flushes the spans still buffered
	var posts []string
	names := map[string]int{}
	for _, s := range col.Spans() {
		if hex.EncodeToString(s.GetTraceId()) != traceID {
			continue
		}
		names[s.GetName()]++
		if s.GetName() == "POST" {
			posts = append(posts, hex.EncodeToString(s.GetSpanId()))
		}
		if s.Resource["service.name"] != "feedbackd" {
			t.Errorf("span %q from service %q, want feedbackd", s.GetName(), s.Resource["service.name"])
		}
		for _, a := range s.GetAttributes() {
			if v := a.GetValue().String(); strings.Contains(v, "/hook") || strings.Contains(v, "token") || strings.Contains(v, "whsec_") {
				t.Errorf("span %q attribute %s = %s", s.GetName(), a.GetKey(), v)
			}
		}
	}
	for name, want := range map[string]int{"process feedback.bounce": 1, "process feedback.retry.1s": 1, "route": 2, "POST": 2, "settle": 2} {
		if names[name] != want {
			t.Errorf("%d %q spans in the sender's trace, want %d (all: %v)", names[name], name, want, names)
		}
	}
	slices.Sort(posts)
	slices.Sort(told)
	if !slices.Equal(posts, told) {
		t.Errorf("POST spans %v, the endpoint was told %v", posts, told)
	}
}
