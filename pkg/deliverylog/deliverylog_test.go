package deliverylog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/outcome"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// running starts a Log on rdb whose Run stops with the test.
func running(t *testing.T, rdb redis.UniversalClient, opts Options) (*Log, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.KeyPrefix = reg, "t:"
	l := New(rdb, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l, reg
}

// event returns the records of one event's delivery: an attempt per
// status (503: retried, 200: delivered, 400: dead-lettered).
func event(org, id string, at time.Time, statuses ...int) []*outcome.Record {
	var recs []*outcome.Record
	for i, code := range statuses {
		base := outcome.Record{Time: at.Add(time.Duration(i) * time.Second), Instance: "i", WebhookID: id, EventID: id, RequestID: "req-" + id,
			Org: org, Sandbox: "prod", Channel: "email", Status: "bounce", Attempt: i + 1, HTTPCode: code}
		a, o := base, base
		a.Type, a.DurationMs = outcome.TypeAttempt, outcome.Millis(time.Duration(10*(i+1))*time.Millisecond)
		o.Type = outcome.TypeOutcome
		switch {
		case code < 300:
			a.Outcome, o.Outcome = "success", "delivered"
		case code >= 500:
			a.Outcome, o.Outcome, a.ErrorClass = "retryable", "retried", fmt.Sprintf("http_%d", code)
		default:
			a.Outcome, o.Outcome, o.Reason, a.ErrorClass = "rejected", "dead_lettered", "rejected", fmt.Sprintf("http_%d", code)
		}
		o.ErrorClass = a.ErrorClass
		recs = append(recs, &a, &o)
	}
	return recs
}

func waitWritten(t *testing.T, reg *prometheus.Registry, n int) {
	t.Helper()
	testenv.Eventually(t, fmt.Sprintf("%d records written", n), 10*time.Second, func() bool {
		return metric(t, reg, "feedbackd_delivery_log_writes_total") >= float64(n)
	})
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Three events' records come back newest first, filtered, in pages whose
// cursors continue exactly where the last page ended; one event's records
// come back oldest first with the outcome it ended with; another config's
// records are not seen.
func TestAttemptsAndMessages(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	l, reg := running(t, rdb, Options{})
	now := time.Now().Truncate(time.Millisecond)
	var all []*outcome.Record
	for _, e := range [][]*outcome.Record{
		event("orgA", "ok", now.Add(-3*time.Minute), 200),
		event("orgA", "retry", now.Add(-2*time.Minute), 503, 200),
		event("orgA", "reject", now.Add(-time.Minute), 400),
		event("orgB", "other", now, 200),
	} {
		l.Add(e)
		all = append(all, e...)
	}
	l.Add([]*outcome.Record{{Type: outcome.TypeOutcome, Outcome: "dead_lettered", Reason: "invalid_event", Time: now}}) // no org: skipped
	waitWritten(t, reg, len(all))
	ctx := t.Context()

	ids := func(recs []*outcome.Record) string {
		var s []string
		for _, r := range recs {
			s = append(s, r.WebhookID+":"+r.Outcome)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		q    Query
		want string
	}{
		{"everything", Query{}, "reject:dead_lettered reject:rejected retry:delivered retry:success retry:retried retry:retryable ok:delivered ok:success"},
		{"attempts", Query{Type: outcome.TypeAttempt}, "reject:rejected retry:success retry:retryable ok:success"},
		{"one outcome", Query{Outcome: "retryable"}, "retry:retryable"},
		{"http status", Query{HTTPStatus: 503}, "retry:retried retry:retryable"},
		{"webhook id", Query{WebhookID: "ok"}, "ok:delivered ok:success"},
		{"event id", Query{EventID: "reject", Type: outcome.TypeOutcome}, "reject:dead_lettered"},
		{"request id", Query{RequestID: "req-retry", Outcome: "success"}, "retry:success"},
		{"status", Query{Status: "sent"}, ""},
		{"since", Query{Since: now.Add(-2*time.Minute + time.Second)}, "reject:dead_lettered reject:rejected retry:delivered retry:success"},
		{"until", Query{Until: now.Add(-2 * time.Minute)}, "retry:retried retry:retryable ok:delivered ok:success"},
		{"window", Query{Since: now.Add(-2 * time.Minute), Until: now.Add(-2 * time.Minute)}, "retry:retried retry:retryable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.Attempts(ctx, "orgA", "prod", tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Records); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if p.NextCursor != "" {
				t.Errorf("a cursor on the only page: %q", p.NextCursor)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		var got []*outcome.Record
		q := Query{Limit: 3}
		pages := 0
		for {
			p, err := l.Attempts(ctx, "orgA", "prod", q)
			if err != nil {
				t.Fatal(err)
			}
			got, pages = append(got, p.Records...), pages+1
			if p.NextCursor == "" {
				break
			}
			q.Cursor = p.NextCursor
		}
		if want := "reject:dead_lettered reject:rejected retry:delivered retry:success retry:retried retry:retryable ok:delivered ok:success"; ids(got) != want || pages != 3 {
			t.Errorf("%d pages: %s", pages, ids(got))
		}
	})

	t.Run("message", func(t *testing.T) {
		m, err := l.Message(ctx, "orgA", "prod", "retry")
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(m.Records); got != "retry:retryable retry:retried retry:success retry:delivered" {
			t.Errorf("records %s", got)
		}
		if m.Final == nil || m.Final.Outcome != "delivered" || m.Final.Attempt != 2 {
			t.Errorf("final %+v", m.Final)
		}
		if _, err := l.Message(ctx, "orgA", "prod", "other"); err != ErrNotFound {
			t.Errorf("orgB's event in orgA's log: %v", err)
		}
	})

	t.Run("health", func(t *testing.T) {
		h, err := l.Health(ctx, "orgA", "prod", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if h.LastDay.Attempts["success"] != 2 || h.LastDay.Attempts["retryable"] != 1 || h.LastDay.Attempts["rejected"] != 1 ||
			h.LastDay.Outcomes["delivered"] != 2 || h.LastDay.Outcomes["dead_lettered"] != 1 || h.LastHour.Outcomes["retried"] != 1 {
			t.Errorf("counts %+v %+v", h.LastHour, h.LastDay)
		}
		if r := h.SuccessRate.LastDay; r == nil || *r != 0.5 {
			t.Errorf("success rate %v", r)
		}
		if d := h.AttemptDurationMs; d.Samples != 4 || *d.P50 != 10 || *d.P99 != 20 {
			t.Errorf("durations %+v", d)
		}
		if h.LastSuccess == nil || !h.LastSuccess.Equal(now.Add(-2*time.Minute+time.Second)) {
			t.Errorf("last success %v", h.LastSuccess)
		}
		if f := h.LastFailure; f == nil || f.WebhookID != "reject" || f.ErrorClass != "http_400" || f.HTTPStatus != 400 {
			t.Errorf("last failure %+v", f)
		}
		none, err := l.Health(ctx, "orgC", "prod", time.Now())
		if err != nil || none.SuccessRate.LastDay != nil || none.LastSuccess != nil || none.AttemptDurationMs.P50 != nil {
			t.Errorf("a config with no records: %+v %v", none, err)
		}
		// DayRates: Health's day rate of each config, nil without attempts.
		rates, err := l.DayRates(ctx, []ConfigID{{"orgA", "prod"}, {"orgC", "prod"}, {"orgA", "prod"}}, time.Now())
		if err != nil || len(rates) != 3 || rates[0] == nil || *rates[0] != *h.SuccessRate.LastDay || rates[1] != nil || rates[2] == nil {
			t.Errorf("day rates %v %v", rates, err)
		}
	})
}

// Every cursor the parser accepts reads without a Redis error, edge ids
// included (Redis refuses "(0-0" as an XREVRANGE end: the parser must not
// let it through), on a stream that exists and on one that does not.
func TestEveryAcceptedCursorReads(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	l, reg := running(t, rdb, Options{})
	l.Add(event("orgA", "ok", time.Now(), 200))
	waitWritten(t, reg, 2)
	for _, id := range []string{"0-0", "0-1", "1-0", "0-18446744073709551615", "18446744073709551615-0",
		"18446744073709551615-18446744073709551615", "1700000000000-3"} {
		c := cursorOf(id)
		if _, err := parseCursor(c); err != nil {
			continue // refused with a 400 naming cursor
		}
		for _, org := range []string{"orgA", "nobody"} {
			if _, err := l.Attempts(t.Context(), org, "prod", Query{Cursor: c}); err != nil {
				t.Errorf("cursor of %s on %s: %v", id, org, err)
			}
		}
	}
}

// The log keeps about PerConfig entries per config and expires with
// MaxAge; the counts outlive what the stream holds.
func TestBounded(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	l, reg := running(t, rdb, Options{PerConfig: 10, MaxAge: time.Hour})
	now := time.Now()
	for i := range 1000 {
		l.Add(event("orgA", fmt.Sprint("e", i), now, 200))
	}
	waitWritten(t, reg, 2000)
	n := rdb.XLen(t.Context(), "t:log:{orgA/prod}").Val()
	if n < 10 || n > 300 { // MAXLEN ~ trims whole nodes of 100 entries
		t.Errorf("%d entries kept, want about 10", n)
	}
	if ttl := rdb.PTTL(t.Context(), "t:log:{orgA/prod}").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("stream TTL %s, want at most max_age", ttl)
	}
	h, err := l.Health(t.Context(), "orgA", "prod", time.Now())
	if err != nil || h.LastHour.Outcomes["delivered"] != 1000 {
		t.Errorf("last hour %+v %v", h.LastHour, err)
	}
}

// Add never blocks: past the buffer records are dropped and counted. What
// is buffered when Run's context ends is written before it returns.
func TestDropsWhenFullAndFlushesOnStop(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	reg := prometheus.NewRegistry()
	l := New(rdb, Options{KeyPrefix: "t:", Buffer: 10, Registerer: reg})
	for i := range 10 {
		l.Add(event("orgA", fmt.Sprint("e", i), time.Now(), 200)) // 2 records each
	}
	if d := metric(t, reg, "feedbackd_delivery_log_dropped_total"); d != 10 {
		t.Errorf("%v dropped, want 10", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(t.Context(), "t:log:{orgA/prod}").Val(); n != 10 {
		t.Errorf("%d entries written at stop, want 10", n)
	}
}

// Redis down: the batch is counted as not written and Run goes on.
func TestWriteErrorsCounted(t *testing.T) {
	r := testenv.StartRedis(t)
	l, reg := running(t, r.Client, Options{})
	r.Kill()
	l.Add(event("orgA", "e", time.Now(), 200))
	testenv.Eventually(t, "the write error counted", 10*time.Second, func() bool {
		return metric(t, reg, "feedbackd_delivery_log_write_errors_total") == 2
	})
}

// In a Cluster each config's keys share a hash slot: a batch spanning
// configs on different nodes is written, and read back.
func TestCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	l, reg := running(t, c.Client, Options{})
	for i := range 20 {
		l.Add(event(fmt.Sprint("org", i), "e", time.Now(), 503, 200))
	}
	waitWritten(t, reg, 80)
	for i := range 20 {
		m, err := l.Message(t.Context(), fmt.Sprint("org", i), "prod", "e")
		if err != nil || len(m.Records) != 4 || m.Final == nil {
			t.Fatalf("org%d: %+v %v", i, m, err)
		}
		h, err := l.Health(t.Context(), fmt.Sprint("org", i), "prod", time.Now())
		if err != nil || h.LastHour.Attempts["retryable"] != 1 {
			t.Fatalf("org%d health: %+v %v", i, h, err)
		}
	}
	var all []ConfigID
	for i := range 20 {
		all = append(all, ConfigID{fmt.Sprint("org", i), "prod"})
	}
	rates, err := l.DayRates(t.Context(), all, time.Now()) // one pipeline over every node
	if err != nil || len(rates) != 20 {
		t.Fatalf("day rates: %v %v", rates, err)
	}
	for i, r := range rates {
		if r == nil || *r != 0.5 {
			t.Errorf("org%d day rate %v", i, r)
		}
	}
}

// A record encoded already (its Value, the outcomes topic's bytes) is
// written as it was encoded, not encoded again.
func TestValueWrittenAsEncoded(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	l, reg := running(t, rdb, Options{})
	recs := event("orgA", "e", time.Now().Truncate(time.Millisecond), 200)
	encoded := *recs[0]
	encoded.Response = "as encoded"
	v, err := encoded.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	recs[0].Value = v
	l.Add(recs)
	waitWritten(t, reg, len(recs))
	p, err := l.Attempts(t.Context(), "orgA", "prod", Query{Type: outcome.TypeAttempt})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 || p.Records[0].Response != "as encoded" {
		t.Fatalf("got %+v, want the attempt as encoded in its Value", p.Records)
	}
}
