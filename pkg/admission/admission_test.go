package admission

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func newController(t *testing.T, rdb *redis.Client, opts Options) *Controller {
	t.Helper()
	opts.KeyPrefix = "t:"
	opts.Refresh = 50 * time.Millisecond
	c := New(rdb, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func admitN(t *testing.T, c *Controller, ep string, n int) []func() {
	t.Helper()
	var releases []func()
	for i := range n {
		d := c.Admit(t.Context(), ep)
		if d.Verdict != Go {
			t.Fatalf("attempt %d: verdict %v, want Go", i+1, d.Verdict)
		}
		releases = append(releases, d.Release)
	}
	return releases
}

func TestLimitIsSharedByInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	a := newController(t, r.Client, Options{Limit: 4})

	releases := admitN(t, a, "ep", 4)
	if d := a.Admit(t.Context(), "ep"); d.Verdict != Busy {
		t.Fatalf("5th attempt: verdict %v, want Busy", d.Verdict)
	}
	admitN(t, a, "other", 1) // other endpoints are not affected

	// Wait returns once a place is free.
	waited := make(chan error, 1)
	go func() { waited <- a.Wait(t.Context(), "ep") }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v with no free place", err)
	case <-time.After(50 * time.Millisecond):
	}
	releases[0]()
	releases[0]() // idempotent: frees one place only
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	admitN(t, a, "ep", 1)
	if d := a.Admit(t.Context(), "ep"); d.Verdict != Busy {
		t.Fatalf("after one release and one admit: verdict %v, want Busy", d.Verdict)
	}

	// A second instance joins: each may have half the limit in flight.
	b := newController(t, r.Client, Options{Limit: 4})
	testenv.Eventually(t, "both instances to see each other", 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		return a.instances == 2 && b.instances == 2
	})
	admitN(t, b, "ep", 2)
	if d := b.Admit(t.Context(), "ep"); d.Verdict != Busy {
		t.Fatalf("second instance, 3rd attempt: verdict %v, want Busy", d.Verdict)
	}
}

func TestWaitGivesUpWithItsContext(t *testing.T) {
	r := testenv.StartRedis(t)
	c := newController(t, r.Client, Options{Limit: 1})
	release := admitN(t, c, "ep", 1)[0]
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx, "ep"); err == nil {
		t.Fatal("Wait returned nil with no free place")
	}
	c.mu.Lock()
	n := len(c.inflight["ep"].waiters)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left behind by a cancelled Wait", n)
	}
	release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) != 0 {
		t.Fatalf("endpoint state kept with nothing in flight: %v", c.inflight)
	}
}

func TestBreakerOpensForAllInstancesAndProbesOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	opts := Options{Limit: 100, Threshold: 3, BaseCooldown: 300 * time.Millisecond, MaxCooldown: time.Minute}
	a := newController(t, r.Client, opts)
	b := newController(t, r.Client, opts)
	ctx := t.Context()

	// Failures from both instances count together.
	for _, c := range []*Controller{a, b} {
		if _, opened := c.Failure(ctx, "ep"); opened {
			t.Fatal("opened before the threshold")
		}
	}
	until, opened := a.Failure(ctx, "ep")
	if !opened {
		t.Fatal("3rd failure did not open the breaker")
	}
	if d := time.Until(until); d <= 0 || d > opts.BaseCooldown {
		t.Fatalf("open for %s, want up to %s", d, opts.BaseCooldown)
	}
	if d := a.Admit(ctx, "ep"); d.Verdict != Open || !d.Until.Equal(until) {
		t.Fatalf("instance that opened it: %+v", d)
	}
	// The other instance learns it from Redis at its next failure or
	// refresh, whichever comes first.
	if _, opened := b.Failure(ctx, "ep"); opened {
		t.Fatal("a failure while open reported opening it again")
	}
	if d := b.Admit(ctx, "ep"); d.Verdict != Open || !d.Until.Equal(until) {
		t.Fatalf("other instance after a failure: %+v", d)
	}
	if d := b.Admit(ctx, "other"); d.Verdict != Go {
		t.Fatalf("another endpoint: verdict %v", d.Verdict)
	}

	// Half-open: of many concurrent attempts over both instances, one is the probe.
	time.Sleep(time.Until(until))
	var mu sync.Mutex
	verdicts := map[Verdict]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		c := []*Controller{a, b}[i%2]
		wg.Go(func() {
			d := c.Admit(ctx, "ep")
			mu.Lock()
			verdicts[d.Verdict]++
			mu.Unlock()
			if d.Release != nil {
				defer d.Release()
			}
		})
	}
	wg.Wait()
	if verdicts[Probe] != 1 || verdicts[Open] != 19 {
		t.Fatalf("half-open verdicts: %v, want 1 probe and 19 open", verdicts)
	}

	// A failed probe reopens for twice as long.
	until, opened = b.Failure(ctx, "ep")
	if d := time.Until(until); !opened || d <= opts.BaseCooldown || d > 2*opts.BaseCooldown {
		t.Fatalf("failed probe: opened %v for %s, want up to %s", opened, d, 2*opts.BaseCooldown)
	}
	// Even an instance that has not refreshed its view yet makes no attempt.
	if d := a.Admit(ctx, "ep"); d.Verdict != Open || !d.Until.Equal(until) {
		t.Fatalf("after the failed probe: %+v", d)
	}

	// A successful probe closes it everywhere.
	time.Sleep(time.Until(until))
	var probe Decision
	testenv.Eventually(t, "a probe", 10*time.Second, func() bool {
		probe = a.Admit(ctx, "ep")
		return probe.Verdict == Probe
	})
	probe.Release()
	if !a.Success(ctx, "ep") {
		t.Fatal("successful probe did not report closing the breaker")
	}
	testenv.Eventually(t, "instance b to see the breaker closed", 10*time.Second, func() bool {
		d := b.Admit(ctx, "ep")
		if d.Release != nil {
			d.Release()
		}
		return d.Verdict == Go
	})
	if n, _ := r.Client.HLen(ctx, "t:breakers").Result(); n != 0 {
		t.Fatalf("%d breakers left in Redis", n)
	}
}

func TestSuccessResetsTheFailureCount(t *testing.T) {
	r := testenv.StartRedis(t)
	c := newController(t, r.Client, Options{Threshold: 3})
	ctx := t.Context()
	for i, ok := range []bool{false, false, true, false, false, true, false, false} {
		if ok {
			c.Success(ctx, "ep")
			continue
		}
		if _, opened := c.Failure(ctx, "ep"); opened {
			t.Fatalf("step %d: opened with no more than 2 failures in a row", i)
		}
	}
	if _, opened := c.Failure(ctx, "ep"); !opened {
		t.Fatal("3rd failure in a row did not open")
	}
}

func TestRedisDownFailsOpen(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	c := New(rdb, Options{Threshold: 1})
	ctx := t.Context()
	for range 3 {
		if _, opened := c.Failure(ctx, "ep"); opened {
			t.Fatal("opened without Redis")
		}
	}
	d := c.Admit(ctx, "ep")
	if d.Verdict != Go {
		t.Fatalf("verdict %v without Redis, want Go", d.Verdict)
	}
	d.Release()
	c.Success(ctx, "ep")
}

// Latency is the attempts' smoothed latency, and at least the time since
// one last ended.
func TestLatency(t *testing.T) {
	c := New(nil, Options{Limit: 2}) // no Redis: limits are local
	if l := c.Latency("ep"); l != 0 {
		t.Fatalf("idle endpoint: %v, want 0", l)
	}
	releases := admitN(t, c, "ep", 2)
	time.Sleep(50 * time.Millisecond) // nothing ends: it looks slower and slower
	if l := c.Latency("ep"); l < 50*time.Millisecond {
		t.Fatalf("two attempts in flight for 50ms: %v, want at least 50ms", l)
	}
	for range 40 { // then attempts end quickly, one after the other
		releases[0]()
		releases[0] = admitN(t, c, "ep", 1)[0]
		releases[0], releases[1] = releases[1], releases[0]
	}
	if l := c.Latency("ep"); l >= 25*time.Millisecond {
		t.Fatalf("an endpoint whose attempts end quickly: %v, want under 25ms", l)
	}
	releases[0]()
	releases[1]()
	if l := c.Latency("ep"); l != 0 {
		t.Fatalf("none in flight: %v, want 0", l)
	}
}
