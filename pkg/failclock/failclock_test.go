package failclock

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/test/testenv"
)

const after = 10 * time.Second // Period: 1s

func newClock(t *testing.T, rdb redis.UniversalClient) *Clock {
	t.Helper()
	return New(rdb, Options{KeyPrefix: "t:", After: after})
}

// fail records a failure at t0+at and returns its answer.
func fail(t *testing.T, c *Clock, t0 time.Time, at time.Duration) (time.Duration, bool) {
	t.Helper()
	since, disable := c.Failure(t.Context(), "org", "sb", t0.Add(-time.Hour), t0.Add(at))
	if since.IsZero() {
		return -1, disable
	}
	return since.Sub(t0).Round(time.Millisecond), disable
}

func TestPeriod(t *testing.T) {
	for _, tc := range []struct{ after, want time.Duration }{
		{120 * time.Hour, time.Minute},
		{3 * time.Second, 300 * time.Millisecond},
		{5 * time.Minute, 30 * time.Second},
	} {
		if got := New(nil, Options{After: tc.after}).Period(); got != tc.want {
			t.Errorf("After %s: Period %s, want %s", tc.after, got, tc.want)
		}
	}
}

// Two instances fail: the clock starts at the first failure, says nothing
// before After, and says to disable once, to one of them, after it.
func TestDisablesOnceAfterTheWholePeriod(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b := newClock(t, r.Client), newClock(t, r.Client)
	t0 := time.Now().Truncate(time.Millisecond)
	for _, step := range []struct {
		c    *Clock
		at   time.Duration
		want time.Duration // since; -1: not asked (within a Period)
	}{
		{a, 0, 0},
		{b, 2 * time.Second, 0},
		{a, 500 * time.Millisecond, -1}, // within a's Period: no round trip
		{a, 5 * time.Second, 0},
		{b, 9999 * time.Millisecond, 0},
	} {
		if since, disable := fail(t, step.c, t0, step.at); since != step.want || disable {
			t.Fatalf("failure at +%s: since +%s, disable %v; want +%s, false", step.at, since, disable, step.want)
		}
	}
	since, disable := fail(t, a, t0, after)
	if !disable || since != 0 {
		t.Fatalf("failure at +After: since +%s, disable %v; want +0, true", since, disable)
	}
	// The other instance, failing at once too, is not told again: the
	// clock starts over (its config is disabled by now anyway).
	if since, disable := fail(t, b, t0, after+2*time.Second); disable || since != after+2*time.Second {
		t.Fatalf("second instance after the disable: since +%s, disable %v", since, disable)
	}
}

// A fails, B (which saw no failure) succeeds: B's success, written by its
// next Flush, stops A's clock; A's next failure starts a new one.
func TestSuccessOnAnotherInstanceStopsTheClock(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b := newClock(t, r.Client), newClock(t, r.Client)
	t0 := time.Now().Truncate(time.Millisecond)
	fail(t, a, t0, 0)
	b.Success("org", "sb", t0.Add(3*time.Second))
	if err := b.Flush(t.Context(), t0.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	if since, disable := fail(t, a, t0, after); disable || since != after {
		t.Fatalf("failure at +After after a success at +3s: since +%s, disable %v; want a new clock", since, disable)
	}
	if _, disable := fail(t, a, t0, 2*after-time.Millisecond); disable {
		t.Fatal("disabled before After since the new clock started")
	}
	if since, disable := fail(t, b, t0, 2*after); !disable || since != after {
		t.Fatalf("B failing After after the new clock started: since +%s, disable %v", since, disable)
	}
}

// A success older than the clock does not stop it; one on the failing
// instance itself counts even before it is flushed.
func TestSuccessBeforeTheClockStartedDoesNotStopIt(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b := newClock(t, r.Client), newClock(t, r.Client)
	t0 := time.Now().Truncate(time.Millisecond)
	b.Success("org", "sb", t0.Add(-time.Second))
	fail(t, a, t0, 0)
	if err := b.Flush(t.Context(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if since, _ := fail(t, a, t0, 5*time.Second); since != 0 {
		t.Fatalf("clock restarted by a success from before it: since +%s", since)
	}
	a.Success("org", "sb", t0.Add(6*time.Second)) // not flushed
	if since, disable := fail(t, a, t0, after); disable || since != after {
		t.Fatalf("own unflushed success ignored: since +%s, disable %v", since, disable)
	}
}

// The clock is in Redis: a restarted instance (a new Clock) goes on with
// it. A change of the config starts it again.
func TestClockSurvivesRestartsAndRestartsOnChange(t *testing.T) {
	r := testenv.StartRedis(t)
	t0 := time.Now().Truncate(time.Millisecond)
	fail(t, newClock(t, r.Client), t0, 0)
	restarted := newClock(t, r.Client)
	changed := t0.Add(5 * time.Second)
	if since, _ := restarted.Failure(t.Context(), "org", "sb", changed, t0.Add(6*time.Second)); !since.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("config changed at +5s: clock since %s, want +6s", since.Sub(t0))
	}
	again := newClock(t, r.Client)
	// An instance still caching the config from before the change does
	// not start it again.
	if since, disable := fail(t, again, t0, 16*time.Second); !disable || since != 6*time.Second {
		t.Fatalf("after a restart: since +%s, disable %v; want +6s, true", since, disable)
	}
}

// Healthy configs cost no Redis writes: successes of configs without a
// running clock leave nothing in Redis.
func TestSuccessesOfHealthyConfigsWriteNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	c := newClock(t, r.Client)
	now := time.Now()
	for i := range 100 {
		c.Success("org", string(rune('a'+i%26)), now)
	}
	if err := c.Flush(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	if keys := r.Client.Keys(t.Context(), "*").Val(); len(keys) != 0 {
		t.Fatalf("keys written for healthy configs: %v", keys)
	}
	if len(c.configs) != 0 {
		t.Fatalf("%d configs still tracked after the flush", len(c.configs))
	}
}

// Without Redis nothing is disabled, errors are counted (not once per
// failure: within a Period there is no round trip), and a success is kept
// until it can be written.
func TestRedisDownFailsSafe(t *testing.T) {
	r := testenv.StartRedis(t)
	reg := prometheus.NewRegistry()
	a := New(r.Client, Options{KeyPrefix: "t:", After: after, Registerer: reg})
	b := newClock(t, r.Client)
	t0 := time.Now().Truncate(time.Millisecond)
	fail(t, a, t0, 0)
	r.Kill()
	for i := range 5 {
		if _, disable := fail(t, a, t0, after+time.Duration(i)*100*time.Millisecond); disable {
			t.Fatal("disabled while Redis is down")
		}
	}
	var m dto.Metric
	if err := a.errors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("%v errors counted for 5 failures within a Period, want 1", n)
	}
	b.Success("org", "sb", t0.Add(13*time.Second))
	if err := b.Flush(t.Context(), t0.Add(13*time.Second)); err == nil {
		t.Fatal("Flush without Redis: no error")
	}
	r.Restart(t)
	testenv.Eventually(t, "redis back", 10*time.Second, func() bool { return r.Client.Ping(t.Context()).Err() == nil })
	// The restarted Redis has no persistence: start a clock again, before
	// the kept success, which must stop it.
	if since, _ := fail(t, a, t0, 11500*time.Millisecond); since != 11500*time.Millisecond {
		t.Fatalf("clock on the restarted Redis since +%s", since)
	}
	if err := b.Flush(t.Context(), t0.Add(14*time.Second)); err != nil {
		t.Fatal(err)
	}
	if since, disable := fail(t, a, t0, 21*time.Second); disable || since != 21*time.Second {
		t.Fatalf("kept success not written: since +%s, disable %v", since, disable)
	}
}

// On a Cluster, the clocks of many configs spread over the masters; a
// failure's pipeline (index and clock) and a flush's (clocks of many
// configs) cross slots.
func TestOnRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	a, b := newClock(t, c.Client), newClock(t, c.Client)
	t0 := time.Now().Truncate(time.Millisecond)
	changed := t0.Add(-time.Hour)
	const configs = 20
	for i := range configs {
		if _, disable := a.Failure(t.Context(), "org", fmt.Sprint(i), changed, t0); disable {
			t.Fatal("disabled at the first failure")
		}
		if i%2 == 0 {
			b.Success("org", fmt.Sprint(i), t0.Add(time.Second))
		}
	}
	if err := b.Flush(t.Context(), t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range configs {
		_, disable := a.Failure(t.Context(), "org", fmt.Sprint(i), changed, t0.Add(after))
		if want := i%2 == 1; disable != want {
			t.Errorf("config %d: disable %v, want %v", i, disable, want)
		}
	}
}

// The hot path of a healthy config: a success costs no Redis round trip.
func BenchmarkSuccess(b *testing.B) {
	c := New(nil, Options{After: time.Hour})
	sandboxes := make([]string, 1000)
	for i := range sandboxes {
		sandboxes[i] = fmt.Sprint("sb-", i)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Success("org", sandboxes[i%len(sandboxes)], now)
		i++
	}
}
