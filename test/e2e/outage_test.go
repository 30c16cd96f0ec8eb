package e2e

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// Records read again (here: a new consumer group reads the topics from the
// start, as after a crash before the commit) are not sent again while their
// webhook-id is in the dedupe window; with dedupe off they are.
func TestRereadRecordsAreNotSentAgain(t *testing.T) { testRereadRecordsAreNotSentAgain(t) }

func testRereadRecordsAreNotSentAgain(t *testing.T, opts ...option) {
	h := start(t, nil, opts...)
	rc := newReceiver(t, func(int, delivery) int { return 200 })
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	const total = 40
	for i := range total {
		h.produceEvent(newEvent("dd-"+strconv.Itoa(i), "org1", "sb1", "email", "delivered"))
	}
	h.eventually("first deliveries", 30*time.Second, func() bool { return rc.count() == total })

	h.stopDaemon()
	h.cfg.Kafka.Group = "feedbackd-reread"
	h.startDaemon()
	h.produceEvent(newEvent("dd-marker", "org1", "sb1", "email", "delivered"))
	h.eventually("the marker after the re-read", 30*time.Second, func() bool { return rc.countFor("dd-marker") == 1 })
	h.eventually("every re-read record settled", 30*time.Second, func() bool {
		return h.metric("feedbackd_duplicates_suppressed_total", nil) >= total
	})
	if got := rc.count(); got != total+1 {
		t.Fatalf("%d requests after the re-read, want %d: re-read records were sent again", got, total+1)
	}
	if got := h.metric("feedbackd_duplicates_suppressed_total", nil); got != total {
		t.Fatalf("feedbackd_duplicates_suppressed_total = %v, want %d", got, total)
	}

	h.stopDaemon()
	h.cfg.Kafka.Group = "feedbackd-no-dedupe"
	h.cfg.Delivery.DedupeWindow = 0
	h.startDaemon()
	h.produceEvent(newEvent("dd-marker-2", "org1", "sb1", "email", "delivered"))
	h.eventually("everything again with dedupe off", 30*time.Second, func() bool { return rc.count() == 2*(total+1)+1 })
	for i := range total {
		if n := rc.countFor("dd-" + strconv.Itoa(i)); n != 2 {
			t.Fatalf("dd-%d sent %d times with dedupe off, want 2", i, n)
		}
	}
}

// Redis down: fetching pauses and readiness fails; nothing is skipped or
// dead-lettered because of it; Redis back (empty): everything is delivered.
func TestRedisOutagePausesConsumption(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Configs.CheckInterval = 100 * time.Millisecond })
	rc := newReceiver(t, func(int, delivery) int { return 200 })
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			h.produceEvent(newEvent("ro-"+strconv.Itoa(i), "org1", "sb1", "sms", "error"))
		}
	}
	produce(0, 10)
	h.eventually("deliveries before the outage", 30*time.Second, func() bool { return rc.count() == 10 })

	h.redis.Kill()
	h.eventually("fetching paused", 20*time.Second, func() bool { return h.metric("feedbackd_consumption_paused", nil) == 1 })
	produce(10, 60)
	time.Sleep(2 * time.Second)
	if code := h.call("GET", "/readyz", nil, nil); code != 503 {
		t.Fatalf("/readyz = %d during the Redis outage, want 503", code)
	}

	h.redis.Restart(t) // empty: configs are rebuilt from the configs topic
	h.eventually("every event delivered after the outage", 60*time.Second, func() bool { return rc.count() >= 60 })
	h.eventually("fetching resumed", 20*time.Second, func() bool { return h.metric("feedbackd_consumption_paused", nil) == 0 })
	for i := range 60 {
		if n := rc.countFor("ro-" + strconv.Itoa(i)); n != 1 {
			t.Errorf("ro-%d delivered %d times, want 1", i, n)
		}
	}
	if n := h.metric("feedbackd_deliveries_skipped_total", nil); n != 0 {
		t.Errorf("%v events skipped because of the outage", n)
	}
	if d := h.dlq(0); len(d) != 0 {
		t.Errorf("%d events dead-lettered because of the outage", len(d))
	}
}

// The broker restarts mid-stream, keeping its data on disk: fetching,
// producing retry records and committing recover by themselves, and every
// event is delivered, none dead-lettered.
func TestBrokerRestartMidStream(t *testing.T) {
	h := start(t, nil, withKafka(kfake.DataDir(t.TempDir())))
	rc := newReceiver(t, func(n int, d delivery) int {
		if strings.HasSuffix(d.header.Get("webhook-id"), "7") && n == 1 {
			return 503 // through a retry tier, across the restart
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	const total = 200
	for i := range total / 2 {
		h.produceEvent(newEvent("br-"+strconv.Itoa(i), "org1", "sb1", "email", "bounce"))
	}
	h.eventually("some deliveries", 30*time.Second, func() bool { return rc.count() > 20 })

	h.kafka.Restart(t, 3*time.Second)
	for i := total / 2; i < total; i++ {
		h.produceEvent(newEvent("br-"+strconv.Itoa(i), "org1", "sb1", "email", "bounce"))
	}
	h.eventually("every event delivered after the restart", 90*time.Second, func() bool {
		for i := range total {
			id := "br-" + strconv.Itoa(i)
			if n := rc.countFor(id); n == 0 || strings.HasSuffix(id, "7") && n < 2 {
				return false
			}
		}
		return true
	})
	dups := 0
	for i := range total {
		id := "br-" + strconv.Itoa(i)
		want := 1
		if strings.HasSuffix(id, "7") {
			want = 2
		}
		dups += rc.countFor(id) - want
	}
	t.Logf("%d requests for %d events, %d duplicates", rc.count(), total, dups)
	if d := h.dlq(0); len(d) != 0 {
		t.Errorf("%d events dead-lettered across the broker restart", len(d))
	}
}

// A configs topic that cannot be read at start-up holds start-up, with a
// clear log line, instead of routing events with no configs (each would be
// skipped as no_config); once it can be read, consumption starts.
func TestStartupWaitsForTheConfigsTopic(t *testing.T) {
	h := start(t, nil)
	h.stopDaemon()
	h.cfg.Kafka.CreateTopics = false
	h.cfg.Kafka.Topics.Configs = "feedback.configs.not-yet"
	h.produceEvent(newEvent("early", "org1", "sb1", "email", "sent"))

	var logs syncBuffer
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, h.cfg, daemon.Options{
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registry: reg,
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	h.eventually("the waiting log line", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "waiting for the webhook configs")
	})
	if n := metricOf(t, reg, "feedbackd_events_consumed_total", nil); n != 0 {
		t.Fatalf("%v events consumed before the configs were read", n)
	}

	if _, err := kadm.NewClient(h.producer).CreateTopic(context.Background(), 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "feedback.configs.not-yet"); err != nil {
		t.Fatal(err)
	}
	h.eventually("consumption after the configs topic appeared", 30*time.Second, func() bool {
		return metricOf(t, reg, "feedbackd_events_consumed_total", nil) == 1
	})
	if !strings.Contains(logs.String(), "webhook configs loaded; consuming events") {
		t.Errorf("no log line saying consumption started:\n%s", logs.String())
	}
}

// A crash after a failed attempt's retry record was written, but before the
// input offset was committed, leaves two copies of the event: the input
// record, read again, and the retry record. Their attempts are serialized
// by a claim on the webhook-id, so the endpoint gets the event once.
func TestCopiesAfterACrashAreNotSentTogether(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, func(n int, d delivery) int {
		if n == 1 {
			return 503
		}
		time.Sleep(2 * time.Second) // long enough for the other copy to come due
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.produceEvent(newEvent("forked", "org1", "sb1", "email", "sent"))
	h.eventually("the retry record", 20*time.Second, func() bool { return h.metric("feedbackd_retries_scheduled_total", nil) == 1 })

	h.stopDaemon()
	h.cfg.Kafka.Group = "feedbackd-after-crash" // reads both copies again
	h.startDaemon()
	h.eventually("a delivery", 30*time.Second, func() bool { return rc.countFor("forked") >= 2 })
	h.eventually("the other copy deferred while the first was in flight", 30*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_deferred_total", map[string]string{"reason": "in_flight"}) >= 1
	})
	h.eventually("the other copy suppressed", 30*time.Second, func() bool {
		return h.metric("feedbackd_duplicates_suppressed_total", nil) >= 1
	})
	if n := rc.countFor("forked"); n != 2 {
		t.Fatalf("the endpoint got %d requests for the event, want 2 (one 503, one 200)", n)
	}
}
