package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// A delivered event, a 503-then-200 event and a dead-lettered one each show
// every attempt, in order, and their outcome in the outcomes topic, read with
// an independent client (kcat); the answer's body is cut at
// outcomes.response_bytes.
func TestOutcomesTopicRecordsEveryAttempt(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed; `make test` installs it")
	}
	h := start(t, func(c *daemon.Config) { c.Outcomes.Enabled, c.Outcomes.ResponseBytes = true, 16 })
	var mu sync.Mutex
	seen := map[string]int{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		switch {
		case id == "out-retry" && n == 1:
			w.WriteHeader(503)
			_, _ = w.Write([]byte("try again later, please: we are busy"))
		case id == "out-reject":
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"bad"}`))
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer rc.Close()
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	for _, id := range []string{"out-ok", "out-retry", "out-reject"} {
		h.produceEvent(newEvent(id, "org1", "sb1", "email", "sent"))
	}

	type step struct{ typ, outcome string }
	want := map[string][]step{
		"out-ok":     {{outcome.TypeAttempt, "success"}, {outcome.TypeOutcome, "delivered"}},
		"out-retry":  {{outcome.TypeAttempt, "retryable"}, {outcome.TypeOutcome, "retried"}, {outcome.TypeAttempt, "success"}, {outcome.TypeOutcome, "delivered"}},
		"out-reject": {{outcome.TypeAttempt, "rejected"}, {outcome.TypeOutcome, "dead_lettered"}},
	}
	var got map[string][]outcome.Record
	var keys map[string]string
	h.eventually("every attempt and outcome on the outcomes topic", 30*time.Second, func() bool {
		out, err := exec.Command(kcat, "-C", "-b", h.kafka.Seeds[0], "-t", "feedback.outcomes", "-o", "beginning", "-e", "-q",
			"-f", "%k\t%s\n").Output()
		if err != nil {
			t.Logf("kcat: %v", err)
			return false
		}
		got, keys = map[string][]outcome.Record{}, map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			key, value, ok := strings.Cut(line, "\t")
			if !ok {
				continue
			}
			var r outcome.Record
			if err := json.Unmarshal([]byte(value), &r); err != nil {
				t.Fatalf("outcome record is not JSON: %s", value)
			}
			got[r.WebhookID] = append(got[r.WebhookID], r)
			keys[r.WebhookID] = key
		}
		for id, steps := range want {
			if len(got[id]) < len(steps) {
				return false
			}
		}
		return true
	})
	for id, steps := range want {
		recs := got[id]
		if len(recs) != len(steps) {
			t.Errorf("%s: %d records, want %d: %+v", id, len(recs), len(steps), recs)
			continue
		}
		for i, s := range steps {
			r := recs[i]
			if r.Type != s.typ || r.Outcome != s.outcome {
				t.Errorf("%s record %d: %s %s, want %s %s", id, i, r.Type, r.Outcome, s.typ, s.outcome)
			}
			if r.Org != "org1" || r.Sandbox != "sb1" || r.EventID != id || r.RequestID != "req-"+id || r.Channel != "email" ||
				r.Status != "sent" || r.Instance == "" || r.Source == "" || r.Time.IsZero() {
				t.Errorf("%s record %d lacks identifiers: %+v", id, i, r)
			}
			if r.Type == outcome.TypeAttempt && (r.DurationMs == nil || r.HTTPCode == 0) {
				t.Errorf("%s attempt %d: no duration or status: %+v", id, i, r)
			}
		}
		if keys[id] != "org1/sb1" {
			t.Errorf("%s: key %q, want org1/sb1", id, keys[id])
		}
	}
	if r := got["out-retry"][0]; r.HTTPCode != 503 || r.Attempt != 1 || r.ErrorClass != "http_503" ||
		r.Response != "try again later," || !r.ResponseTruncated {
		t.Errorf("first attempt of out-retry: %+v (response cut at 16 bytes, truncated)", r)
	}
	if r := got["out-retry"][2]; r.Attempt != 2 || r.HTTPCode != 200 || r.Response != "ok" || r.ResponseTruncated {
		t.Errorf("second attempt of out-retry: %+v", r)
	}
	if r := got["out-retry"][1]; r.RetryInMs <= 0 {
		t.Errorf("retried outcome without retryInMs: %+v", r)
	}
	if r := got["out-reject"][1]; r.Reason != "rejected" || r.HTTPCode != 400 {
		t.Errorf("dead-lettered outcome: %+v", r)
	}
	if r := got["out-reject"][0]; r.Response != `{"error":"bad"}` {
		t.Errorf("rejected attempt's response %q", r.Response)
	}
}

// An input offset is not committed while the outcome records of its event
// are not acknowledged: the broker answers every produce to the outcomes
// topic with an error until the test lets it through; then the offset is
// committed. A retriable error is retried by the Kafka client itself, any
// other by the pipeline (with backoff); an instance stopped meanwhile
// commits nothing, and the one after it settles the event without sending
// it again.
func TestOutcomesUnacknowledgedHoldTheCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int16
		stop bool // stop the instance while the records are refused, then start another
	}{
		{"retried by the client", kerr.NotEnoughReplicas.Code, false},
		{"retried by the pipeline", kerr.TopicAuthorizationFailed.Code, false},
		{"stopped while refused", kerr.TopicAuthorizationFailed.Code, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testOutcomesHoldTheCommit(t, tc.code, tc.stop) })
	}
}

func testOutcomesHoldTheCommit(t *testing.T, code int16, stop bool) {
	h := start(t, func(c *daemon.Config) { c.Outcomes.Enabled = true })
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	topics, err := kadm.NewClient(h.producer).ListTopics(context.Background(), "feedback.outcomes")
	if err != nil || topics["feedback.outcomes"].Err != nil {
		t.Fatal(err, topics)
	}
	id := topics["feedback.outcomes"].ID
	var refuse atomic.Bool
	var refused atomic.Int64
	refuse.Store(true)
	h.kafka.Cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		h.kafka.Cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		outcomes := func(t kmsg.ProduceRequestTopic) bool { return t.Topic == "feedback.outcomes" || t.TopicID == id }
		if !refuse.Load() || !slices.ContainsFunc(req.Topics, outcomes) {
			return nil, nil, false
		}
		refused.Add(1)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	rec := h.produceEvent(newEvent("held-1", "org1", "sb1", "email", "sent"))
	committed := func() int64 {
		offs, err := kadm.NewClient(h.producer).FetchOffsets(context.Background(), h.cfg.Kafka.Group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup(rec.Topic, rec.Partition); ok {
			return o.At
		}
		return -1
	}
	h.eventually("the event delivered and its outcome records refused", 30*time.Second, func() bool {
		return rc.count() == 1 && refused.Load() >= 3
	})
	// The pipeline commits every second: three commit rounds go by.
	time.Sleep(3 * time.Second)
	if at := committed(); at > rec.Offset {
		t.Fatalf("offset %d committed (at %d) while its outcome records were not acknowledged", rec.Offset, at)
	}
	if stop {
		h.stopDaemon()
		if at := committed(); at > rec.Offset {
			t.Fatalf("offset %d committed (at %d) by an instance stopped before its outcome records were acknowledged", rec.Offset, at)
		}
		refuse.Store(false)
		h.startDaemon()
	}
	refuse.Store(false)
	h.eventually("the offset committed once the outcome records are acknowledged", 30*time.Second, func() bool {
		return committed() == rec.Offset+1
	})
	if n := rc.count(); n != 1 {
		t.Errorf("%d deliveries, want 1 (a re-read event is known delivered)", n)
	}
}
