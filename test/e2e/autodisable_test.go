package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/outcome"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

// Two instances in one group share the failure clock through Redis. A
// reads feedback.sent, whose events its endpoint fails (503); B reads
// feedback.delivered, whose events the same endpoint accepts, and never
// sees a failure. While B delivers, A's failures never last
// delivery.disable_after (3s): B's successes stop the clock A started, and
// A's events are retried on. Once B's events stop, the config is disabled
// after the period and not before (its disabledReason and the
// endpoint.disabled record say since when), the failing events and later
// ones are dead-lettered as endpoint_disabled, and after "enabled": true a
// replay delivers them.
func TestAutoDisableAfterSustainedFailureAcrossInstances(t *testing.T) {
	const disableAfter = 3 * time.Second
	h := start(t, func(c *daemon.Config) {
		c.Delivery.DisableAfter = disableAfter
		c.Retry.Schedule = make([]time.Duration, 30) // 30s of retries, 1s apart
		for i := range c.Retry.Schedule {
			c.Retry.Schedule[i] = time.Second
		}
		c.Outcomes.Enabled = true
		c.Kafka.Topics.Input = []string{"feedback.sent"}
	})
	// B: the same group and Redis, other input topics and retry tiers, so
	// that it never attempts A's failing events.
	cfgA := h.cfg
	h.cfg.Kafka.Topics.Input = []string{"feedback.delivered"}
	h.cfg.Kafka.Topics.RetryPrefix = "feedback.retryb"
	b := h.spawn()
	h.cfg = cfgA

	var up atomic.Bool
	var mu sync.Mutex
	var lastOK time.Time              // B's last delivery while A's events fail
	var firstFail, lastFail time.Time // A's attempts
	accepted := map[string]int{}
	failures := map[string]int{}
	rc := newReceiver(t, func(_ int, d delivery) int {
		id := d.header.Get("webhook-id")
		mu.Lock()
		defer mu.Unlock()
		if !up.Load() && strings.HasPrefix(id, "fail-") {
			failures[id]++
			if firstFail.IsZero() {
				firstFail = time.Now()
			}
			lastFail = time.Now()
			return 503
		}
		if !up.Load() {
			lastOK = time.Now()
		}
		accepted[id]++
		return 200
	})
	cfg := webhookConfig("orgF", "sb", rc.URL)
	h.createWebhook(cfg)
	for i := range 3 {
		h.produceEvent(newEvent(fmt.Sprintf("fail-%d", i), "orgF", "sb", "email", "sent"))
	}

	// Phase 1: B delivers an event every 300ms while A fails, until A has
	// failed for twice the period.
	okSent := 0
	failedFor := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return lastFail.Sub(firstFail)
	}
	for deadline := time.Now().Add(time.Minute); failedFor() < 2*disableAfter; okSent++ {
		if n := h.metric("feedbackd_endpoints_disabled_total", nil); n != 0 {
			t.Fatalf("disabled while another instance delivered (A failing for %s)", failedFor())
		}
		if time.Now().After(deadline) {
			t.Fatalf("A failed for only %s in a minute", failedFor())
		}
		h.produceEvent(newEvent(fmt.Sprintf("ok-%d", okSent), "orgF", "sb", "email", "delivered"))
		time.Sleep(300 * time.Millisecond)
	}
	h.eventually("B's events delivered", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) == okSent
	})
	var got map[string]any
	h.call("GET", "/v1/webhooks/orgF/sb", nil, &got)
	if got["enabled"] != true || h.metric("feedbackd_dlq_records_total", nil) != 0 {
		t.Fatalf("disabled while another instance delivered (A failing for %s): %v; %v dead letters", failedFor(), got, h.metric("feedbackd_dlq_records_total", nil))
	}
	if n := metricOf(t, h.reg, "feedbackd_delivery_attempts_total", map[string]string{"outcome": "success"}); n != 0 {
		t.Fatalf("A delivered %v events: the successes must come from B", n)
	}
	if n := metricOf(t, b.reg, "feedbackd_delivery_attempts_total", map[string]string{"outcome": "retryable"}); n != 0 {
		t.Fatalf("B saw %v failures: it must only succeed", n)
	}

	// Phase 2: only failures. The config is disabled, after the period.
	h.eventually("config disabled", 30*time.Second, func() bool {
		got = nil
		h.call("GET", "/v1/webhooks/orgF/sb", nil, &got)
		return got["enabled"] == false
	})
	reason, _ := got["disabledReason"].(string)
	prefix, suffix := "no successful delivery since ", " (delivery.disable_after 3s)"
	if !strings.HasPrefix(reason, prefix) || !strings.HasSuffix(reason, suffix) {
		t.Fatalf("disabledReason %q", reason)
	}
	since, err := time.Parse(time.RFC3339, strings.TrimSuffix(strings.TrimPrefix(reason, prefix), suffix))
	if err != nil {
		t.Fatalf("disabledReason %q: %v", reason, err)
	}
	mu.Lock()
	last := lastOK
	mu.Unlock()
	// The clock starts at the first failure after B's last success
	// (written a Period, 300ms, later at most; RFC 3339 has seconds).
	if since.Before(last.Add(-time.Second).Truncate(time.Second)) {
		t.Errorf("failing since %s, but B delivered at %s", since, last)
	}
	rec := waitOutcome(t, h, func(r outcome.Record) bool { return r.Type == outcome.TypeEndpointDisabled })
	if rec.DisabledReason != reason || rec.Org != "orgF" || rec.Sandbox != "sb" || !strings.HasPrefix(rec.WebhookID, "fail-") {
		t.Errorf("endpoint.disabled record %+v, config's reason %q", rec, reason)
	}
	if rec.Time.Sub(since) < disableAfter {
		t.Errorf("disabled at %s, less than %s after failing since %s", rec.Time, disableAfter, since)
	}
	if n := metricOf(t, h.reg, "feedbackd_endpoints_disabled_total", map[string]string{"reason": "failing"}) +
		metricOf(t, b.reg, "feedbackd_endpoints_disabled_total", map[string]string{"reason": "failing"}); n != 1 {
		t.Errorf("feedbackd_endpoints_disabled_total{reason=failing}: %v over both instances, want 1", n)
	}

	// Every failing event, and a later one, is dead-lettered as
	// endpoint_disabled; the later one is not attempted.
	h.produceEvent(newEvent("fail-later", "orgF", "sb", "email", "sent"))
	var recs []dlq.Record
	h.eventually("4 endpoint_disabled dead letters", 30*time.Second, func() bool {
		recs = h.dlq(0)
		return len(recs) >= 4
	})
	for _, r := range recs {
		if r.Reason != dlq.ReasonEndpointDisabled {
			t.Errorf("dead letter %s: reason %s, want endpoint_disabled", r.WebhookID, r.Reason)
		}
	}
	mu.Lock()
	if failures["fail-later"] != 0 {
		t.Error("an event of the disabled config was attempted")
	}
	mu.Unlock()

	// Enabled again, with the endpoint up: a replay delivers them.
	up.Store(true)
	cfg["enabled"] = true
	got = nil
	if code := h.call("PUT", "/v1/webhooks/orgF/sb", cfg, &got); code != 200 || got["enabled"] != true || got["disabledReason"] != nil {
		t.Fatalf("re-enable: %d %v", code, got)
	}
	var p replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgF", "reason": dlq.ReasonEndpointDisabled}, &p); code != 202 {
		t.Fatalf("replay: %d %+v", code, p)
	}
	h.eventually("replay done", 30*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays/"+p.ID, nil, &p)
		return p.State == replay.StateDone
	})
	h.eventually("the dead letters delivered", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range []string{"fail-0", "fail-1", "fail-2", "fail-later"} {
			if accepted[id] != 1 {
				return false
			}
		}
		return true
	})
}

// waitOutcome reads the outcomes topic from the start until a record
// matches.
func waitOutcome(t *testing.T, h *harness, match func(outcome.Record) bool) outcome.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(h.kafkaClient(), kgo.ConsumeTopics(h.cfg.Kafka.Topics.Outcomes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, kr := range cl.PollFetches(ctx).Records() {
			var r outcome.Record
			if err := json.Unmarshal(kr.Value, &r); err != nil {
				t.Fatalf("outcome record is not JSON: %s", kr.Value)
			}
			if match(r) {
				return r
			}
		}
	}
	t.Fatal("no matching record on the outcomes topic in 30s")
	return outcome.Record{}
}
