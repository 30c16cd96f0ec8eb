package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// kafkaDeadLetters reads a dead-letter topic of a kfake broker with
// dlq.Scan, as the daemon does; before each read it calls before, and it
// counts the records it hands on.
type kafkaDeadLetters struct {
	seeds  []string
	before func()
	read   atomic.Int64
}

func (k *kafkaDeadLetters) Scan(ctx context.Context, fn func(dlq.Record) bool) error {
	if k.before != nil {
		k.before()
	}
	return dlq.Scan(ctx, []kgo.Opt{kgo.SeedBrokers(k.seeds...)}, "dlq", func(r dlq.Record) bool {
		k.read.Add(1)
		return fn(r)
	})
}

// deadLetterTopic starts a broker whose topic "dlq" holds n dead letters.
func deadLetterTopic(t *testing.T, n int) []string {
	t.Helper()
	k := testenv.StartKafka(t)
	ctx := testenv.Context(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := topics.Ensure(ctx, kadm.NewClient(cl), topics.Spec{Name: "dlq", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	e := header.DeadLetter{Reason: dlq.ReasonRejected, WebhookID: "w", FailedAt: time.Now()}
	var recs []*kgo.Record
	for range n {
		recs = append(recs, dlq.ToKafka("dlq", e, &kgo.Record{Value: []byte("{}")}))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return k.Seeds
}

func getDLQ(t *testing.T, h http.Handler, query string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), "GET", "/v1/dlq"+query, nil)
	req.Header.Set("Authorization", "Bearer admin-token")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func dlqHandler(dl DeadLetters) http.Handler {
	return NewHandler(nil, nil, Options{Auth: adminauth.New(adminauth.Options{Token: "admin-token"}), DeadLetters: dl})
}

// deadLetter= reads the topic up to its match and no further; without it
// the whole topic is read.
func TestDeadLetterReadEndsAtItsMatch(t *testing.T) {
	dl := &kafkaDeadLetters{seeds: deadLetterTopic(t, 300)}
	h := dlqHandler(dl)

	w := getDLQ(t, h, "?deadLetter=dlq/0/3")
	var one struct {
		DeadLetters []dlq.Entry `json:"deadLetters"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &one); w.Code != http.StatusOK || err != nil ||
		len(one.DeadLetters) != 1 || one.DeadLetters[0].DeadLetter != "dlq/0/3" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if n := dl.read.Swap(0); n != 4 {
		t.Errorf("read %d records to find offset 3, want 4", n)
	}
	if w := getDLQ(t, h, "?limit=1"); w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if n := dl.read.Load(); n != 300 {
		t.Errorf("read %d records for the statistics, want all 300", n)
	}
}

// Beyond maxScans reads at once, GET /v1/dlq answers 503 busy with
// Retry-After; once a read ends, the next is served. A bad filter is
// still a 400.
func TestDeadLetterReadsAreBounded(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	dl := &kafkaDeadLetters{seeds: deadLetterTopic(t, 3), before: func() { started <- struct{}{}; <-release }}
	h := dlqHandler(dl)
	done := make(chan int, maxScans)
	for range maxScans {
		go func() { done <- getDLQ(t, h, "").Code }()
		<-started
	}

	w := getDLQ(t, h, "")
	var e struct{ Error apiError }
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != http.StatusServiceUnavailable || e.Error.Code != "busy" || w.Header().Get("Retry-After") != scanRetryAfter {
		t.Errorf("a read beyond %d: %d %q Retry-After %q", maxScans, w.Code, e.Error.Code, w.Header().Get("Retry-After"))
	}
	if w := getDLQ(t, h, "?limit=0"); w.Code != http.StatusBadRequest {
		t.Errorf("a bad limit while busy: %d", w.Code)
	}

	close(release)
	for range maxScans {
		if code := <-done; code != http.StatusOK {
			t.Errorf("a read within the bound: %d", code)
		}
	}
	go func() { <-started }()
	if w := getDLQ(t, h, ""); w.Code != http.StatusOK {
		t.Errorf("a read after the others ended: %d %s", w.Code, w.Body)
	}
}
