package dedupe

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestRememberedForTheWindow(t *testing.T) {
	r := testenv.StartRedis(t)
	reg := prometheus.NewRegistry()
	s := New(r.Client, "t:", 2*time.Second, reg)
	t.Cleanup(s.Close)
	ctx := t.Context()

	if s.Delivered(ctx, "msg-1") {
		t.Fatal("an id never recorded is reported delivered")
	}
	if err := s.Record(ctx, "msg-1"); err != nil {
		t.Fatal(err)
	}
	if !s.Delivered(ctx, "msg-1") {
		t.Fatal("a recorded id is not reported delivered")
	}
	if s.Delivered(ctx, "msg-2") {
		t.Fatal("another id is reported delivered")
	}
	if got := value(t, s.metrics.suppressed); got != 1 {
		t.Fatalf("suppressed = %v, want 1", got)
	}
	ttl, err := r.Client.PTTL(ctx, "t:delivered:msg-1").Result()
	if err != nil || ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("key TTL = %v (%v), want within the 2s window", ttl, err)
	}

	// After the window the id is forgotten.
	r.Client.PExpire(ctx, "t:delivered:msg-1", time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if s.Delivered(ctx, "msg-1") {
		t.Fatal("an id is still reported delivered after its window")
	}
}

func TestRedisDownNeverHoldsAnEventBack(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	t.Cleanup(s.Close)
	ctx := t.Context()
	if err := s.Record(ctx, "msg-1"); err != nil {
		t.Fatal(err)
	}
	r.Kill()

	if s.Delivered(ctx, "msg-1") {
		t.Fatal("with Redis down the check must let the attempt go")
	}
	if err := s.Record(ctx, "msg-2"); err == nil {
		t.Fatal("Record with Redis down returned no error")
	}
	for op, want := range map[string]float64{"check": 1, "record": 1} {
		if got := value(t, s.metrics.errors.WithLabelValues(op)); got != want {
			t.Errorf("errors{op=%q} = %v, want %v", op, got, want)
		}
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Concurrent records are written in batches, each one acknowledged only
// once Redis has it; after Close, Record fails instead of hanging.
func TestConcurrentRecordsAndClose(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	ctx := t.Context()
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Record(ctx, "id-"+strconv.Itoa(i)); err != nil {
				t.Errorf("record %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	keys, err := r.Client.Keys(ctx, "t:delivered:*").Result()
	if err != nil || len(keys) != n {
		t.Fatalf("%d keys in Redis (%v), want %d", len(keys), err, n)
	}
	s.Close()
	if err := s.Record(ctx, "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close = %v, want ErrClosed", err)
	}
}
