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

	claim := func(id string) State { return s.Claim(ctx, id, time.Minute).State }
	c := s.Claim(ctx, "msg-1", time.Minute)
	if c.State != Claimed {
		t.Fatalf("first claim of an id: %v, want Claimed", c.State)
	}
	if got := claim("msg-1"); got != InFlight {
		t.Fatalf("second claim while the first is held: %v, want InFlight", got)
	}
	if err := s.Record(ctx, "msg-1"); err != nil {
		t.Fatal(err)
	}
	if got := claim("msg-1"); got != Delivered {
		t.Fatalf("claim of a recorded id: %v, want Delivered", got)
	}
	if !s.Delivered(ctx, "msg-1") || s.Delivered(ctx, "msg-2") {
		t.Fatal("Delivered does not tell a recorded id from an unknown one")
	}
	s.Release(ctx, "msg-1", c) // a claim overwritten by Record is not released
	if got := claim("msg-1"); got != Delivered {
		t.Fatalf("after releasing a recorded claim: %v, want Delivered", got)
	}
	if got := claim("msg-2"); got != Claimed {
		t.Fatalf("another id: %v, want Claimed", got)
	}
	if got := value(t, s.metrics.suppressed); got != 2 {
		t.Fatalf("suppressed = %v, want 2", got)
	}
	ttl, err := r.Client.PTTL(ctx, "t:delivered:msg-1").Result()
	if err != nil || ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("key TTL = %v (%v), want within the 2s window", ttl, err)
	}

	// After the window the id is forgotten.
	r.Client.PExpire(ctx, "t:delivered:msg-1", time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if got := claim("msg-1"); got != Claimed {
		t.Fatalf("an id after its window: %v, want Claimed", got)
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

	if got := s.Claim(ctx, "msg-1", time.Minute).State; got != Unknown {
		t.Fatalf("claim with Redis down: %v, want Unknown (the attempt goes ahead)", got)
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

// A failed attempt releases its claim, so the next attempt goes at once; a
// claim whose holder crashed expires; a release never drops another's claim.
func TestClaimReleaseAndExpiry(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	t.Cleanup(s.Close)
	ctx := t.Context()

	first := s.Claim(ctx, "a", time.Minute)
	s.Release(ctx, "a", first)
	second := s.Claim(ctx, "a", time.Minute)
	if second.State != Claimed {
		t.Fatalf("claim after a release: %v, want Claimed", second.State)
	}
	s.Release(ctx, "a", first) // stale: must not drop the second claim
	if got := s.Claim(ctx, "a", time.Minute).State; got != InFlight {
		t.Fatalf("a stale release dropped the current claim: %v, want InFlight", got)
	}

	if got := s.Claim(ctx, "b", 50*time.Millisecond).State; got != Claimed {
		t.Fatalf("claim b: %v", got)
	}
	time.Sleep(100 * time.Millisecond) // its holder crashed
	if got := s.Claim(ctx, "b", time.Minute).State; got != Claimed {
		t.Fatalf("claim after the holder's claim expired: %v, want Claimed", got)
	}
}
