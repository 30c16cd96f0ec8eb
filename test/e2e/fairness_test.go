package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// A dead endpoint's breaker, shared by two instances: after the threshold
// no attempt is made while it is open, one probe is sent per half-open
// period, waiting does not use up the retry schedule, and when the
// endpoint comes back every event is delivered, none dead-lettered.
func TestCircuitBreakerSharedProbesAndRecovers(t *testing.T) {
	testCircuitBreakerSharedProbesAndRecovers(t)
}

func testCircuitBreakerSharedProbesAndRecovers(t *testing.T, opts ...option) {
	const events, threshold = 12, 2
	cooldown := time.Second
	h := start(t, func(c *daemon.Config) {
		// Six attempts, more than any one event can use as a probe here,
		// and a span (the longest an event is deferred) of over a minute.
		c.Retry.Schedule = []time.Duration{time.Second, time.Second, time.Second, time.Second, time.Minute}
		c.Delivery.EndpointConcurrency = 1 // one attempt at a time per instance
		c.Delivery.Breaker.Threshold = threshold
		c.Delivery.Breaker.Cooldown = cooldown
		c.Delivery.Breaker.MaxCooldown = 2 * cooldown
	}, opts...)
	second := h.spawn()
	defer second.stop()

	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var failedAt []time.Time
	delivered := map[string]int{}
	rc := newReceiver(t, func(_ int, d delivery) int {
		mu.Lock()
		defer mu.Unlock()
		if down.Load() {
			failedAt = append(failedAt, d.at)
			return 503
		}
		delivered[d.header.Get("webhook-id")]++
		return 200
	})
	h.createWebhook(webhookConfig("dead", "sb", rc.URL))
	for i := range events {
		h.produceEvent(newEvent(fmt.Sprintf("dead-%d", i), "dead", "sb", "email", "sent"))
	}

	// Down for longer than the whole schedule (six attempts 1s apart),
	// which would have dead-lettered everything had deferrals counted.
	time.Sleep(8 * time.Second)
	mu.Lock()
	failures := len(failedAt)
	failed := append([]time.Time(nil), failedAt...)
	mu.Unlock()
	// Without the breaker: 72 attempts (6 per event). With it: the
	// threshold, one more per instance (in flight, or made before it
	// learnt the breaker was open), then one probe per open period (1s,
	// then 2s: at most 4 in 8s).
	burst := threshold + 2
	if failures < threshold || failures > burst+4 {
		t.Fatalf("%d attempts while the endpoint was down, want %d..%d: %v", failures, threshold, burst+4, failed)
	}
	for i := burst; i < len(failed); i++ {
		if gap := failed[i].Sub(failed[i-1]); gap < cooldown-100*time.Millisecond {
			t.Errorf("probes %d and %d only %s apart; the open period is at least %s", i, i+1, gap, cooldown)
		}
	}
	if n := h.metric("feedbackd_dlq_records_total", nil); n != 0 {
		t.Fatalf("%v events dead-lettered while the breaker held them", n)
	}

	down.Store(false)
	h.eventually("every event delivered after recovery", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == events
	})
	deferred := h.metric("feedbackd_deliveries_deferred_total", map[string]string{"reason": "circuit_open"}) +
		metricOf(t, second.reg, "feedbackd_deliveries_deferred_total", map[string]string{"reason": "circuit_open"})
	if deferred == 0 {
		t.Error("no event counted as deferred by the open breaker")
	}
	opened := h.metric("feedbackd_circuit_breaker_transitions_total", map[string]string{"state": "opened"}) +
		metricOf(t, second.reg, "feedbackd_circuit_breaker_transitions_total", map[string]string{"state": "opened"})
	if opened < 2 {
		t.Errorf("breaker opened %v times, want at least 2 (threshold, then a failed probe)", opened)
	}
	h.eventually("the breaker closed", 5*time.Second, func() bool {
		return h.metric("feedbackd_circuit_breakers_open", nil) == 0 && metricOf(t, second.reg, "feedbackd_circuit_breakers_open", nil) == 0
	})
	if n := h.metric("feedbackd_dlq_records_total", nil) + metricOf(t, second.reg, "feedbackd_dlq_records_total", nil); n != 0 {
		t.Errorf("%v events dead-lettered", n)
	}
	t.Logf("%d failed attempts while down, %v deferrals, breaker opened %v times", failures, deferred, opened)
}

// One busy tenant with many more events than slots, places and parking
// together: every event is delivered and none deferred (a lone tenant is
// never slow), through every way of waiting for its endpoint (parked
// without a slot, or with one). The deadlock feedbackbench once hit this
// way is a narrow race; TestHandedPlaceGoesOnWithoutAFreeSlot in
// pkg/pipeline builds it on purpose.
func TestBusyTenantAloneNeverStalls(t *testing.T) {
	const events = 1000
	h := start(t, func(c *daemon.Config) {
		c.Delivery.Concurrency = 4
		c.Delivery.MaxParked = 4 // two for one endpoint
		c.Delivery.EndpointConcurrency = 1
	})
	rc := newReceiver(t, func(n int, _ delivery) int {
		if n%7 == 0 {
			time.Sleep(time.Millisecond)
		}
		return 200
	})
	h.createWebhook(webhookConfig("busy", "sb", rc.URL))
	for i := range events {
		h.produceEvent(newEvent(fmt.Sprintf("busy-%d", i), "busy", "sb", "email", "sent"))
	}
	h.eventually("every event delivered", 60*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_total", map[string]string{"result": "delivered"}) == events
	})
	if n := h.metric("feedbackd_deliveries_deferred_total", nil); n != 0 {
		t.Errorf("%v events deferred", n)
	}
}
