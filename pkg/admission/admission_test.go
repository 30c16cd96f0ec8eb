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
		if d.Answer != Go {
			t.Fatalf("attempt %d: answer %v, want Go", i+1, d.Answer)
		}
		releases = append(releases, d.Release)
	}
	return releases
}

func TestLimitIsSharedByInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	a := newController(t, r.Client, Options{Limit: 4})

	releases := admitN(t, a, "ep", 4)
	if d := a.Admit(t.Context(), "ep"); d.Answer != Busy {
		t.Fatalf("5th attempt: answer %v, want Busy", d.Answer)
	}
	admitN(t, a, "other", 1) // other endpoints are not affected

	// Wait returns once it is handed a place; Admit does not take one
	// before it.
	type waited struct {
		d   Decision
		err error
	}
	w := make(chan waited, 1)
	go func() { d, err := a.Wait(t.Context(), "ep"); w <- waited{d, err} }()
	select {
	case r := <-w:
		t.Fatalf("Wait returned %+v with no free place", r)
	case <-time.After(50 * time.Millisecond):
	}
	releases[0]()
	releases[0]() // idempotent: frees one place only
	got := <-w
	if got.err != nil || got.d.Answer != Go {
		t.Fatalf("Wait after a release = %+v, want Go", got)
	}
	if d := a.Admit(t.Context(), "ep"); d.Answer != Busy {
		t.Fatalf("after a place was handed to a waiter: answer %v, want Busy", d.Answer)
	}
	got.d.Release()
	admitN(t, a, "ep", 1)

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
	if d := b.Admit(t.Context(), "ep"); d.Answer != Busy {
		t.Fatalf("second instance, 3rd attempt: answer %v, want Busy", d.Answer)
	}
}

func TestWaitGivesUpWithItsContext(t *testing.T) {
	r := testenv.StartRedis(t)
	c := newController(t, r.Client, Options{Limit: 1})
	release := admitN(t, c, "ep", 1)[0]
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(ctx, "ep"); err == nil {
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
	// The checks between opening and the end of the cooldown must fit in
	// it on a loaded machine (300 ms did not, once, beside a benchmark).
	opts := Options{Limit: 100, Threshold: 3, BaseCooldown: 2 * time.Second, MaxCooldown: time.Minute}
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
	if d := a.Admit(ctx, "ep"); d.Answer != Open || !d.Until.Equal(until) {
		t.Fatalf("instance that opened it: %+v", d)
	}
	// The other instance learns it from Redis at its next failure or
	// refresh, whichever comes first.
	if _, opened := b.Failure(ctx, "ep"); opened {
		t.Fatal("a failure while open reported opening it again")
	}
	if d := b.Admit(ctx, "ep"); d.Answer != Open || !d.Until.Equal(until) {
		t.Fatalf("other instance after a failure: %+v", d)
	}
	if d := b.Admit(ctx, "other"); d.Answer != Go {
		t.Fatalf("another endpoint: answer %v", d.Answer)
	}

	// Half-open: of many concurrent attempts over both instances, one is the probe.
	time.Sleep(time.Until(until))
	var mu sync.Mutex
	answers := map[Answer]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		c := []*Controller{a, b}[i%2]
		wg.Go(func() {
			d := c.Admit(ctx, "ep")
			mu.Lock()
			answers[d.Answer]++
			mu.Unlock()
			if d.Release != nil {
				defer d.Release()
			}
		})
	}
	wg.Wait()
	if answers[Probe] != 1 || answers[Open] != 19 {
		t.Fatalf("half-open answers: %v, want 1 probe and 19 open", answers)
	}

	// A failed probe reopens for twice as long.
	until, opened = b.Failure(ctx, "ep")
	if d := time.Until(until); !opened || d <= opts.BaseCooldown || d > 2*opts.BaseCooldown {
		t.Fatalf("failed probe: opened %v for %s, want up to %s", opened, d, 2*opts.BaseCooldown)
	}
	// Even an instance that has not refreshed its view yet makes no attempt.
	if d := a.Admit(ctx, "ep"); d.Answer != Open || !d.Until.Equal(until) {
		t.Fatalf("after the failed probe: %+v", d)
	}

	// A successful probe closes it everywhere.
	time.Sleep(time.Until(until))
	var probe Decision
	testenv.Eventually(t, "a probe", 10*time.Second, func() bool {
		probe = a.Admit(ctx, "ep")
		return probe.Answer == Probe
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
		return d.Answer == Go
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
	if d.Answer != Go {
		t.Fatalf("answer %v without Redis, want Go", d.Answer)
	}
	d.Release()
	c.Success(ctx, "ep")
}

// An endpoint is slow when its attempts take over SlowFactor times as long
// as everyone's, or it stops answering for that long.
func TestSlow(t *testing.T) {
	c := New(nil, Options{Limit: 4}) // no Redis: limits are local
	if c.Slow("a") {
		t.Fatal("an idle endpoint is slow")
	}
	// Attempts to a and b take about as long: neither is slow.
	for range 20 {
		for _, ep := range []string{"a", "b"} {
			rel := admitN(t, c, ep, 1)[0]
			time.Sleep(time.Millisecond)
			rel()
		}
	}
	ra, rb := admitN(t, c, "a", 1)[0], admitN(t, c, "b", 1)[0]
	if c.Slow("a") || c.Slow("b") {
		t.Fatal("endpoints as fast as everyone are slow")
	}
	// b stops answering: after SlowFactor times everyone's latency and
	// MinSlow, it is slow; a is not.
	ra()
	time.Sleep(MinSlow + 50*time.Millisecond)
	for range 5 { // a goes on answering quickly
		rel := admitN(t, c, "a", 1)[0]
		time.Sleep(time.Millisecond)
		rel()
	}
	ra = admitN(t, c, "a", 1)[0]
	if !c.Slow("b") {
		t.Fatal("an endpoint that stopped answering is not slow")
	}
	if c.Slow("a") {
		t.Fatal("a fast endpoint is slow")
	}
	ra()
	rb()
	if c.Slow("b") {
		t.Fatal("an endpoint with nothing in flight is slow")
	}

	// When every attempt stalls, none is slow: the endpoints are not the
	// cause.
	ra, rb = admitN(t, c, "a", 1)[0], admitN(t, c, "b", 1)[0]
	time.Sleep(MinSlow + 50*time.Millisecond)
	if c.Slow("a") || c.Slow("b") {
		t.Fatal("endpoints stalled together are slow")
	}
	ra()
	rb()
}

// An endpoint that answers, but several times slower than the others, is
// slow: its events should not hold delivery slots while they wait.
func TestSlowButAnswering(t *testing.T) {
	c := New(nil, Options{Limit: 4})
	for range 8 {
		for ep, took := range map[string]time.Duration{"fast": time.Millisecond, "medium": 30 * time.Millisecond} {
			rel := admitN(t, c, ep, 1)[0]
			time.Sleep(took)
			rel()
		}
	}
	rf, rm := admitN(t, c, "fast", 1)[0], admitN(t, c, "medium", 1)[0]
	defer rf()
	defer rm()
	if !c.Slow("medium") {
		t.Fatal("an endpoint 30 times slower than the other is not slow")
	}
	if c.Slow("fast") {
		t.Fatal("the fast endpoint is slow")
	}
}

// An endpoint with no other to compare with is never slow: a single busy
// tenant waits its turn.
func TestSlowAlone(t *testing.T) {
	c := New(nil, Options{Limit: 4})
	for range 5 {
		rel := admitN(t, c, "only", 1)[0]
		time.Sleep(time.Millisecond)
		rel()
	}
	rel := admitN(t, c, "only", 1)[0]
	time.Sleep(MinSlow + 50*time.Millisecond)
	if c.Slow("only") {
		t.Fatal("the only endpoint is slow")
	}
	rel()
}

// Waiters are handed places first come first served, and new callers of
// Admit never take one before them.
func TestWaitersInOrder(t *testing.T) {
	c := New(nil, Options{Limit: 1}) // no Redis: limits are local
	release := admitN(t, c, "ep", 1)[0]
	const n = 5
	order := make(chan int, n)
	for i := range n {
		go func() {
			d, err := c.Wait(t.Context(), "ep")
			if err != nil || d.Answer != Go {
				t.Errorf("waiter %d: %+v %v", i, d, err)
				return
			}
			order <- i
			time.Sleep(5 * time.Millisecond)
			if c.Admit(t.Context(), "ep").Answer != Busy {
				t.Errorf("Admit took a place with waiters queued")
			}
			d.Release()
		}()
		testenv.Eventually(t, "the waiter queued", 10*time.Second, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.inflight["ep"].waiters) == i+1
		})
	}
	release()
	for want := range n {
		if got := <-order; got != want {
			t.Fatalf("waiter %d served %d-th", got, want+1)
		}
	}
}

// A waiter handed a place after the endpoint's breaker opened gives it
// back and is told Open.
func TestWaitSeesAnOpenBreaker(t *testing.T) {
	c := New(nil, Options{Limit: 1})
	release := admitN(t, c, "ep", 1)[0]
	type waited struct {
		d   Decision
		err error
	}
	w := make(chan waited, 1)
	go func() { d, err := c.Wait(t.Context(), "ep"); w <- waited{d, err} }()
	testenv.Eventually(t, "the waiter queued", 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight["ep"].waiters) == 1
	})
	c.mu.Lock()
	c.open["ep"] = openState{until: time.Now().Add(time.Minute), cooldown: time.Minute}
	c.mu.Unlock()
	release()
	r := <-w
	if r.err != nil || r.d.Answer != Open || r.d.Until.Before(time.Now().Add(50*time.Second)) {
		t.Fatalf("Wait = %+v, want Open until the breaker ends", r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) != 0 {
		t.Fatalf("places left held: %+v", c.inflight)
	}
}

// A place Wait hands over at once counts like one Admit hands over: once
// given back, stalled attempts elsewhere still read as a stall, not as one
// slow endpoint.
func TestWaitCountsItsPlace(t *testing.T) {
	c := New(nil, Options{Limit: 4})
	for range 3 {
		d, err := c.Wait(context.Background(), "a")
		if err != nil || d.Answer != Go {
			t.Fatalf("Wait = %v, %v", d.Answer, err)
		}
		d.Release()
	}
	rb, rc := admitN(t, c, "b", 1)[0], admitN(t, c, "c", 1)[0]
	defer rb()
	defer rc()
	time.Sleep(MinSlow + 50*time.Millisecond)
	if c.Slow("b") || c.Slow("c") {
		t.Fatal("endpoints stalled together are slow")
	}
}

// Breaker reads what the instances share: closed with its failures, open
// until the cooldown ends, then half-open until a success closes it.
func TestBreakerReadsTheSharedState(t *testing.T) {
	r := testenv.StartRedis(t)
	opts := Options{Threshold: 2, BaseCooldown: 200 * time.Millisecond}
	a := newController(t, r.Client, opts)
	reader := New(r.Client, Options{KeyPrefix: "t:"}) // another instance, not running
	ctx := t.Context()
	state := func() Breaker {
		t.Helper()
		b, err := reader.Breaker(ctx, "ep")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := state(); b.State != "closed" || b.Failures != 0 || b.Until != nil {
		t.Errorf("new endpoint: %+v", b)
	}
	a.Failure(ctx, "ep")
	if b := state(); b.State != "closed" || b.Failures != 1 {
		t.Errorf("after a failure: %+v", b)
	}
	until, _ := a.Failure(ctx, "ep")
	if b := state(); b.State != "open" || b.Until == nil || !b.Until.Equal(until.Truncate(time.Millisecond)) {
		t.Errorf("opened until %s: %+v", until, b)
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	if b := state(); b.State != "half_open" {
		t.Errorf("after the cooldown: %+v", b)
	}
	a.Success(ctx, "ep")
	if b := state(); b.State != "closed" || b.Failures != 0 {
		t.Errorf("after a success: %+v", b)
	}
}
