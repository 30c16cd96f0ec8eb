package e2e

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// SIGTERM while an endpoint hangs: the drain gives up after
// shutdown.timeout, leaving the group does not wait a second time for the
// cancelled delivery, and after a restart the event is delivered.
func TestShutdownWithHangingEndpoint(t *testing.T) {
	var logs syncBuffer
	h := start(t, func(c *daemon.Config) { c.Shutdown.Timeout = 2 * time.Second; c.Delivery.Timeout = time.Minute }, withLogs(&logs))
	var hang atomic.Bool
	hang.Store(true)
	rc := newReceiver(t, func(_ int, d delivery) int {
		for hang.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.produceEvent(newEvent("hanging", "org1", "sb1", "email", "sent"))
	h.eventually("the delivery to hang", 10*time.Second, func() bool { return rc.count() == 1 })

	h.stopDaemon()
	out := logs.String()
	if !strings.Contains(out, "drain timed out") {
		t.Fatalf("no drain timeout in the logs:\n%s", out)
	}
	if strings.Contains(out, "revoked partition still has deliveries in flight") {
		t.Fatal("leaving the group waited again for the delivery the drain had cancelled")
	}
	hang.Store(false)
	h.startDaemon()
	h.eventually("redelivery after the restart", 20*time.Second, func() bool { return rc.countFor("hanging") == 2 })
}

// Instances join and leave the group mid-stream (cooperative rebalances of
// input and retry partitions): every event ends delivered or dead-lettered.
func TestInstancesJoinAndLeaveMidStream(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Kafka.Partitions = 4 })
	var mu sync.Mutex
	delivered := map[string]bool{}
	rc := newReceiver(t, func(n int, d delivery) int {
		time.Sleep(time.Millisecond)
		id := d.header.Get("webhook-id")
		if strings.HasSuffix(id, "5") && n == 1 {
			return 503 // through a retry tier, across the rebalances
		}
		mu.Lock()
		delivered[id] = true
		mu.Unlock()
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	const total = 600
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			b := mustJSON(t, newEvent("mv-"+strconv.Itoa(i), "org1", "sb1", "email", "sent"))
			h.producer.Produce(context.Background(), &kgo.Record{Topic: "feedback.sent", Key: []byte(strconv.Itoa(i)), Value: b}, nil)
		}
		if err := h.producer.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 200)
	second := h.spawn() // joins: partitions move to it
	produce(200, 400)
	h.eventually("progress", 20*time.Second, func() bool { return rc.count() > 250 })
	h.stopDaemon() // the first leaves: everything moves to the second
	third := h.spawn()
	produce(400, total)
	h.eventually("every event delivered", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == total
	})
	second.stop()
	third.stop()
	t.Logf("%d requests for %d events (duplicates are allowed, losses are not)", rc.count(), total)
}

// A record the broker accepted but the dead-letter topic cannot take with
// headers added is dead-lettered without its value, and does not block its
// partition.
func TestOversizedRecordDoesNotBlock(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Kafka.Partitions = 1 })
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	big, err := kgo.NewClient(kgo.SeedBrokers(h.kafka.Seeds...), kgo.ProducerBatchMaxBytes(1_040_000))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	huge := []byte(`{"x":"` + strings.Repeat("a", 1_000_050) + `"}`)
	if err := big.ProduceSync(context.Background(), &kgo.Record{Topic: "feedback.sent", Value: huge}).FirstErr(); err != nil {
		t.Fatalf("the broker refused the test record: %v", err)
	}
	h.produceEvent(newEvent("after-huge", "org1", "sb1", "email", "sent"))
	recs := h.dlq(1)
	r := recs[0]
	if r.Reason != dlq.ReasonInvalidEvent || r.LastError != "too_large" || r.ValueOmitted != len(huge) || len(r.Value) != 0 {
		t.Fatalf("dead letter: %+v, value %d bytes", r.DeadLetter, len(r.Value))
	}
	h.eventually("the event behind it", 10*time.Second, func() bool { return rc.count() == 1 })
}

// A dead letter the broker refuses for good, even without its value, is a
// lost dead letter: counted apart (and alerted on), logged, and it does not
// block its partition.
func TestDeadLetterRefusedForGoodIsCountedAsLost(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Kafka.Partitions = 1 })
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	small := "200" // bytes: less than a dead letter's headers
	if _, err := kadm.NewClient(h.producer).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: &small}}, "feedback.dlq"); err != nil {
		t.Fatal(err)
	}
	h.produce("feedback.sent", []byte(`{"requestId": "lost", "imsOrg": `))
	h.produceEvent(newEvent("after-lost", "org1", "sb1", "email", "sent"))
	h.eventually("the event behind it", 20*time.Second, func() bool { return rc.count() == 1 })
	h.eventually("the lost dead letter counted", 10*time.Second, func() bool {
		return h.metric("feedbackd_dead_letters_lost_total", map[string]string{"reason": "invalid_event"}) == 1
	})
	if n := h.metric("feedbackd_dlq_records_total", map[string]string{"reason": "invalid_event"}); n != 0 {
		t.Errorf("feedbackd_dlq_records_total{reason=invalid_event} = %v, want 0: the dead letter was not written", n)
	}
}
