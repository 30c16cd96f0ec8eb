package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/header"
)

// Every status is delivered once; the body is the event minus eventId; the
// signature verifies with the reference library; events without eventId
// get a derived, stable webhook-id.
func TestEveryStatusDeliveredOnceAndSigned(t *testing.T) { testEveryStatusDeliveredOnceAndSigned(t) }

func testEveryStatusDeliveredOnceAndSigned(t *testing.T, opts ...option) {
	h := start(t, nil, opts...)
	rc := newReceiver(t, nil)
	secret := h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	sent := map[string]ev{}
	for _, status := range []string{"sent", "delivered", "bounce", "error"} {
		for _, channel := range []string{"email", "sms"} {
			e := newEvent("evt-"+status+"-"+channel, "org1", "sb1", channel, status)
			sent[e["eventId"].(string)] = e
			h.produceEvent(e)
		}
	}
	noID := newEvent("", "org1", "sb1", "email", "sent")
	delete(noID, "eventType") // defaulted on the way out
	rec := h.produceEvent(noID)
	derivedID := event.DeriveID(rec.Topic, rec.Partition, rec.Offset)

	h.eventually("9 deliveries", 30*time.Second, func() bool { return rc.count() >= 9 })
	time.Sleep(300 * time.Millisecond) // would-be duplicates arrive
	got := rc.deliveries()
	if len(got) != 9 {
		t.Fatalf("%d deliveries, want 9 (each event once)", len(got))
	}
	for _, d := range got {
		verify(t, secret, d)
		if d.header.Get("Content-Type") != "application/json" || d.header.Get("User-Agent") != "feedbackd/e2e" {
			t.Errorf("headers: %v", d.header)
		}
		var body map[string]any
		if err := json.Unmarshal(d.body, &body); err != nil {
			t.Fatal(err)
		}
		if _, ok := body["eventId"]; ok {
			t.Errorf("eventId reached the receiver: %s", d.body)
		}
		id := d.header.Get("webhook-id")
		want := map[string]any(nil)
		if id == derivedID {
			want = roundTrip(t, noID)
			want["eventType"] = "message.feedback"
		} else if e, ok := sent[id]; ok {
			want = roundTrip(t, e)
			delete(want, "eventId")
		} else {
			t.Fatalf("unexpected webhook-id %q", id)
		}
		if !reflect.DeepEqual(body, want) {
			t.Errorf("body of %s:\n got %s\nwant %v", id, d.body, want)
		}
	}
	for _, status := range []string{"sent", "delivered", "bounce", "error"} {
		if n := h.metric("feedbackd_deliveries_total", map[string]string{"status": status, "result": "delivered"}); n < 2 {
			t.Errorf("deliveries_total{status=%s,result=delivered} = %v", status, n)
		}
	}
	// The delivery log holds each delivery's attempt and outcome and reads
	// back, on every Redis this scenario runs on (with the README's ACL).
	var page struct{ Records []map[string]any }
	h.eventually("18 records in the delivery log", 10*time.Second, func() bool {
		return h.call("GET", "/v1/webhooks/org1/sb1/attempts", nil, &page) == 200 && len(page.Records) >= 18
	})
	var health struct {
		LastHour struct{ Attempts map[string]int64 }
	}
	if code := h.call("GET", "/v1/webhooks/org1/sb1/health", nil, &health); code != 200 || health.LastHour.Attempts["success"] != 9 {
		t.Errorf("health: %d %+v", code, health)
	}
}

func roundTrip(t *testing.T, e ev) map[string]any {
	b, _ := json.Marshal(e)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Invalid JSON and events missing required fields are dead-lettered as
// invalid_event, byte for byte, and do not block what follows them.
func TestInvalidEventsAreDeadLettered(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	bad := [][]byte{
		[]byte(`{"requestId": "r1", "imsOrg": `),
		mustJSON(t, func() ev {
			e := newEvent("missing-sandbox", "org1", "sb1", "email", "sent")
			delete(e, "sandbox")
			return e
		}()),
		mustJSON(t, func() ev {
			e := newEvent("missing-status", "org1", "sb1", "email", "sent")
			e["messageDeliveryFeedback"] = map[string]any{}
			return e
		}()),
	}
	for _, b := range bad {
		h.produce("feedback.sent", b)
	}
	h.produceEvent(newEvent("good-after-bad", "org1", "sb1", "email", "sent"))

	recs := h.dlq(3)
	if len(recs) != 3 {
		t.Fatalf("%d dead letters, want 3", len(recs))
	}
	wantError := []string{ // per bad record; order across partitions is not guaranteed
		"invalid_json",
		"schema: sandbox: required",
		"schema: messageDeliveryFeedback.feedbackStatus: required",
	}
	for _, r := range recs {
		i := slices.IndexFunc(bad, func(b []byte) bool { return string(b) == string(r.Value) })
		if i < 0 {
			t.Fatalf("dead letter value is not an original record, byte for byte: %s", r.Value)
		}
		if r.Reason != dlq.ReasonInvalidEvent || r.Attempts != 0 || r.LastError != wantError[i] {
			t.Errorf("dead letter of bad record %d: reason %q attempts %d error %q", i, r.Reason, r.Attempts, r.LastError)
		}
		for _, k := range []string{"dlq-reason", "webhook-id", "dlq-attempts", "dlq-last-status", "dlq-last-error", "dlq-first-attempt-at", "dlq-failed-at", "dlq-source"} {
			if !slices.ContainsFunc(r.Headers, func(hd kgo.RecordHeader) bool { return hd.Key == k }) {
				t.Errorf("dead letter of bad record %d lacks header %s", i, k)
			}
		}
	}
	h.eventually("the good event after the bad ones", 10*time.Second, func() bool { return rc.count() == 1 })
	if n := h.metric("feedbackd_dlq_records_total", map[string]string{"reason": "invalid_event"}); n != 3 {
		t.Errorf("dlq_records_total{invalid_event} = %v", n)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// 500 then 200 is delivered on the retry with the same webhook-id; 400 is
// dead-lettered as rejected; always-500 ends as retries_exhausted.
func TestRetryRejectAndExhaustion(t *testing.T) { testRetryRejectAndExhaustion(t) }

func testRetryRejectAndExhaustion(t *testing.T, opts ...option) {
	h := start(t, nil, opts...)
	flaky := newReceiver(t, func(n int, _ delivery) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	rejecting := newReceiver(t, func(int, delivery) int { return 400 })
	broken := newReceiver(t, func(int, delivery) int { return 500 })
	flakySecret := h.createWebhook(webhookConfig("flaky", "sb", flaky.URL))
	h.createWebhook(webhookConfig("rejecting", "sb", rejecting.URL))
	h.createWebhook(webhookConfig("broken", "sb", broken.URL))

	h.produceEvent(newEvent("e-flaky", "flaky", "sb", "email", "bounce"))
	h.produceEvent(newEvent("e-reject", "rejecting", "sb", "sms", "sent"))
	h.produceEvent(newEvent("e-broken", "broken", "sb", "email", "error"))

	h.eventually("flaky delivered on the second attempt", 20*time.Second, func() bool { return flaky.count() == 2 })
	fd := flaky.deliveries()
	if fd[0].header.Get("webhook-id") != "e-flaky" || fd[1].header.Get("webhook-id") != "e-flaky" {
		t.Fatalf("retry changed the webhook-id: %q, %q", fd[0].header.Get("webhook-id"), fd[1].header.Get("webhook-id"))
	}
	if fd[1].at.Sub(fd[0].at) < 900*time.Millisecond {
		t.Errorf("retry came %s after the failure; the schedule says 1s", fd[1].at.Sub(fd[0].at))
	}
	verify(t, flakySecret, fd[1])

	recs := h.dlq(2)
	byID := map[string]dlq.Record{}
	for _, r := range recs {
		byID[r.WebhookID] = r
	}
	rej := byID["e-reject"]
	if rej.Reason != dlq.ReasonRejected || rej.Attempts != 1 || rej.LastStatus != 400 || rej.LastError != "http_400" {
		t.Errorf("rejected dead letter: %+v", rej.DeadLetter)
	}
	if rejecting.count() != 1 {
		t.Errorf("a 400 was retried: %d attempts", rejecting.count())
	}
	ex := byID["e-broken"]
	if ex.Reason != dlq.ReasonRetriesExhausted || ex.Attempts != 3 || ex.LastStatus != 500 || ex.FirstAttemptAt.IsZero() ||
		ex.FailedAt.Before(ex.FirstAttemptAt) || ex.Source == "" || header.Get(ex.Headers, "dlq-failed-at") == "" {
		t.Errorf("exhausted dead letter: %+v", ex.DeadLetter)
	}
	for _, k := range []string{header.DLQFirstAttemptAt, header.DLQFailedAt} {
		v := header.Get(ex.Headers, k)
		if at, err := time.Parse(time.RFC3339, v); err != nil || header.FormatTime(at) != v {
			t.Errorf("exhausted dead letter: %s %q is not RFC 3339 in UTC with milliseconds", k, v)
		}
	}
	if broken.count() != 3 {
		t.Errorf("always-500 endpoint got %d attempts, want 3 (schedule of 2 retries)", broken.count())
	}
	if n := h.metric("feedbackd_retries_scheduled_total", nil); n != 3 {
		t.Errorf("retries_scheduled_total = %v, want 3 (1 flaky + 2 broken)", n)
	}
}

// A slow endpoint and a failing one, sharing a partition with a healthy
// tenant, do not hold the healthy tenant's deliveries back: the slow one
// has at most its in-flight limit of requests open, some of its events
// wait without a slot and the rest are deferred; the failing one's breaker
// opens after the threshold, deferring its other events without attempts.
func TestSlowOrFailingTenantDoesNotBlockOthers(t *testing.T) {
	const limit, parked, threshold = 5, 10, 3 // parked: one endpoint's half of max_parked
	h := start(t, func(c *daemon.Config) {
		c.Kafka.Partitions = 1
		c.Retry.Schedule = []time.Duration{time.Minute}
		c.Delivery.EndpointConcurrency = limit
		c.Delivery.MaxParked = 2 * parked
		c.Delivery.Breaker.Threshold = threshold
		c.Delivery.Breaker.Cooldown = time.Minute
	})
	release := make(chan struct{})
	var releaseOnce sync.Once
	slow := newReceiver(t, func(int, delivery) int { <-release; return 200 })
	failing := newReceiver(t, func(int, delivery) int { return 503 })
	healthy := newReceiver(t, nil)
	// Registered after the receivers, so it runs before they close.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	h.createWebhook(webhookConfig("slow", "sb", slow.URL))
	h.createWebhook(webhookConfig("failing", "sb", failing.URL))
	h.createWebhook(webhookConfig("healthy", "sb", healthy.URL))

	// On one partition, slow and failing records come first.
	for i := range 20 {
		h.produceEvent(newEvent(fmt.Sprintf("slow-%d", i), "slow", "sb", "email", "sent"))
		h.produceEvent(newEvent(fmt.Sprintf("failing-%d", i), "failing", "sb", "email", "sent"))
	}
	// Every healthy event arrives while the slow requests are still held
	// open and the failing tenant's events wait a minute for their retry
	// or for the breaker. (Batches of its in-flight limit: a larger burst
	// would wait, and partly be deferred, by the same limit.)
	for b := range 20 / limit {
		for i := b * limit; i < (b+1)*limit; i++ {
			h.produceEvent(newEvent(fmt.Sprintf("healthy-%d", i), "healthy", "sb", "email", "sent"))
		}
		h.eventually("healthy tenant served", 20*time.Second, func() bool { return healthy.count() == (b+1)*limit })
	}
	// The slow tenant: its limit in flight, its share of max_parked
	// waiting, the rest deferred. The failing tenant: each event attempted
	// once (its retry is a minute away) or deferred, by its open breaker or,
	// before that, by its own in-flight limit.
	deferred := func() float64 { return h.metric("feedbackd_deliveries_deferred_total", nil) }
	h.eventually("slow tenant's events parked, failing tenant's attempted or deferred", 10*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_parked", nil) == parked && float64(failing.count())+deferred() == 20+20-limit-parked
	})
	if n := slow.count(); n != limit {
		t.Fatalf("slow endpoint has %d requests open, want its limit of %d", n, limit)
	}
	if n := h.metric("feedbackd_deliveries_deferred_total", map[string]string{"reason": "circuit_open"}); n == 0 {
		t.Error("no event deferred by the failing tenant's open breaker")
	}
	// Up to the threshold, plus what was in flight when it was reached.
	if n := failing.count(); n < threshold || n > threshold+limit {
		t.Fatalf("failing endpoint got %d attempts, want %d..%d", n, threshold, threshold+limit)
	}
	h.eventually("the breaker reported open", 5*time.Second, func() bool { return h.metric("feedbackd_circuit_breakers_open", nil) == 1 })
	releaseOnce.Do(func() { close(release) })
	h.eventually("slow tenant's waiting events served", 20*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_total", map[string]string{"result": "delivered"}) == 20+limit+parked
	})
	if n := h.metric("feedbackd_dlq_records_total", nil); n != 0 {
		t.Errorf("%v dead letters", n)
	}
}

// feedbackd stopped and restarted mid-stream: every event ends delivered
// or dead-lettered.
func TestRestartMidStreamLosesNothing(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, func(n int, d delivery) int {
		time.Sleep(2 * time.Millisecond)
		id := d.header.Get("webhook-id")
		if id[len(id)-1] == '7' && n == 1 { // some fail once
			return 503
		}
		if id[len(id)-1] == '3' { // some never succeed
			return 400
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	const total = 300
	for i := range total {
		h.produceEvent(newEvent("r-"+strconv.Itoa(i), "org1", "sb1", "email", "delivered"))
	}
	h.eventually("some progress", 20*time.Second, func() bool { return rc.count() > 30 })
	h.stopDaemon()
	stoppedAt := rc.count()
	h.startDaemon()

	want := map[string]string{}
	for i := range total {
		id := "r-" + strconv.Itoa(i)
		want[id] = "delivered"
		if id[len(id)-1] == '3' {
			want[id] = "dead-lettered"
		}
	}
	h.eventually("every event settled", 60*time.Second, func() bool {
		got := outcomes(h, rc)
		for id, w := range want {
			if got[id] != w {
				return false
			}
		}
		return true
	})
	t.Logf("stopped after %d requests; %d requests in all for %d events", stoppedAt, rc.count(), total)
}

// outcomes maps webhook-id to "delivered" or "dead-lettered".
func outcomes(h *harness, rc *receiver) map[string]string {
	got := map[string]string{}
	for _, d := range rc.deliveries() {
		id := d.header.Get("webhook-id")
		if id[len(id)-1] != '3' && id[len(id)-1] != '7' || rc.countFor(id) >= 2 {
			got[id] = "delivered"
		}
	}
	for _, r := range h.dlq(0) {
		got[r.WebhookID] = "dead-lettered"
	}
	return got
}

func (rc *receiver) countFor(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.counts[id]
}

// Redis flushed while running: configs come back from feedback.configs and
// no event is skipped for lack of a config meanwhile.
func TestRedisFlushRebuildsConfigs(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Configs.CacheTTL = time.Nanosecond })
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.produceEvent(newEvent("before-flush", "org1", "sb1", "email", "sent"))
	h.eventually("first delivery", 10*time.Second, func() bool { return rc.count() == 1 })

	if err := h.redis.Client.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		h.produceEvent(newEvent("after-flush-"+strconv.Itoa(i), "org1", "sb1", "email", "sent"))
	}
	h.eventually("deliveries after the flush", 20*time.Second, func() bool { return rc.count() == 11 })
	if n := h.metric("feedbackd_events_skipped_total", map[string]string{"reason": "no_config"}); n != 0 {
		t.Fatalf("%v events skipped as no_config after the flush", n)
	}
	if n := h.redis.Client.Exists(t.Context(), "feedbackd:cfg:org1/sb1").Val(); n != 1 {
		t.Fatal("config not back in Redis")
	}
}

// Admin API: create, 409 on duplicate, field errors, an edit takes effect on
// the next event, campaigns, delete.
func TestAdminAPI(t *testing.T) { testAdminAPI(t) }

func testAdminAPI(t *testing.T, opts ...option) {
	h := start(t, nil, opts...)
	a := newReceiver(t, nil)
	b := newReceiver(t, nil)

	cfg := webhookConfig("org1", "sb1", a.URL)
	cfg["headers"] = map[string]string{"X-Tenant": "one"}
	var created map[string]any
	if code := h.call("POST", "/v1/webhooks", cfg, &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if created["signingSecret"] == nil || created["enabled"] != true || created["createdAt"] == nil {
		t.Fatalf("create answer: %v", created)
	}
	var apiErr struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	if code := h.call("POST", "/v1/webhooks", cfg, &apiErr); code != 409 || apiErr.Error.Code != "conflict" {
		t.Fatalf("duplicate create: %d %+v", code, apiErr)
	}

	for _, tc := range []struct {
		mutate func(map[string]any)
		field  string
	}{
		{func(c map[string]any) { delete(c, "url") }, "url"},
		{func(c map[string]any) { c["url"] = "ftp://x" }, "url"},
		{func(c map[string]any) { c["channels"] = []string{"fax"} }, "channels.0"},
		{func(c map[string]any) { c["auth"] = map[string]string{"type": "basic"} }, "auth.type"},
		{func(c map[string]any) { c["auth"] = map[string]string{"type": "jwt"} }, "auth.algorithm"},
		{func(c map[string]any) { c["headers"] = map[string]string{"webhook-id": "x"} }, "headers.webhook-id"},
		{func(c map[string]any) { c["sandbox"] = map[string]string{} }, "sandbox.id"},
	} {
		bad := webhookConfig("org2", "sb1", a.URL)
		tc.mutate(bad)
		apiErr.Error.Field = ""
		if code := h.callInvalid("POST", "/v1/webhooks", bad, &apiErr); code != 400 || apiErr.Error.Field != tc.field {
			t.Errorf("want 400 on %s, got %d %+v", tc.field, code, apiErr.Error)
		}
	}
	if code := h.call("GET", "/v1/webhooks", nil, nil); code != 200 {
		t.Fatalf("list: %d", code)
	}
	req, _ := http.NewRequest("GET", h.api+"/v1/webhooks", nil)
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 401 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}

	h.produceEvent(newEvent("to-a", "org1", "sb1", "email", "sent"))
	h.eventually("delivery to a", 10*time.Second, func() bool { return a.count() == 1 })
	if a.deliveries()[0].header.Get("X-Tenant") != "one" {
		t.Error("custom header not sent")
	}

	// Edit: the URL moves to b and campaigns are narrowed; the very next
	// event follows the edit.
	cfg["url"] = b.URL
	cfg["campaigns"] = []string{"camp-1"}
	var got map[string]any
	if code := h.call("PUT", "/v1/webhooks/org1/sb1", cfg, &got); code != 200 || got["url"] != b.URL {
		t.Fatalf("replace: %d %v", code, got)
	}
	if _, leaked := got["signingSecret"]; leaked {
		t.Fatal("secret returned by a read")
	}
	h.produceEvent(newEvent("to-b", "org1", "sb1", "email", "sent"))
	h.eventually("delivery to b", 10*time.Second, func() bool { return b.count() == 1 })
	if a.count() != 1 {
		t.Fatal("edit not applied to the next event")
	}

	// Campaign disabled: skipped, not dead-lettered. Enabled again: sent.
	if code := h.call("DELETE", "/v1/webhooks/org1/sb1/campaigns/camp-1", nil, &got); code != 200 {
		t.Fatalf("disable campaign: %d", code)
	}
	h.produceEvent(newEvent("camp-off", "org1", "sb1", "email", "sent"))
	h.eventually("campaign skip counted", 10*time.Second, func() bool {
		return h.metric("feedbackd_events_skipped_total", map[string]string{"reason": "campaign_not_enabled"}) == 1
	})
	if code := h.call("PUT", "/v1/webhooks/org1/sb1/campaigns/camp-1", nil, &got); code != 200 {
		t.Fatalf("enable campaign: %d", code)
	}
	h.produceEvent(newEvent("camp-on", "org1", "sb1", "email", "sent"))
	h.eventually("delivery after enabling", 10*time.Second, func() bool { return b.count() == 2 })

	if code := h.call("DELETE", "/v1/webhooks/org1/sb1", nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := h.call("GET", "/v1/webhooks/org1/sb1", nil, nil); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
	h.produceEvent(newEvent("after-delete", "org1", "sb1", "email", "sent"))
	h.eventually("no_config skip", 10*time.Second, func() bool {
		return h.metric("feedbackd_events_skipped_total", map[string]string{"reason": "no_config"}) == 1
	})
	if b.count() != 2 {
		t.Fatal("event delivered after delete")
	}
}

// Skips are counted, not dead-lettered: unknown status, channel not
// selected, no config.
func TestSkipsAreCounted(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	cfg := webhookConfig("org1", "sb1", rc.URL)
	cfg["channels"] = []string{"email"}
	h.createWebhook(cfg)
	h.produceEvent(newEvent("opened", "org1", "sb1", "email", "opened"))
	h.produceEvent(newEvent("sms", "org1", "sb1", "sms", "sent"))
	h.produceEvent(newEvent("nobody", "org9", "sb9", "email", "sent"))
	h.produceEvent(newEvent("ok", "org1", "sb1", "email", "sent"))
	h.eventually("3 skips", 10*time.Second, func() bool { return h.metric("feedbackd_events_skipped_total", nil) == 3 })
	for _, reason := range []string{"status_not_delivered", "channel_not_selected", "no_config"} {
		if n := h.metric("feedbackd_events_skipped_total", map[string]string{"reason": reason}); n != 1 {
			t.Errorf("skipped{%s} = %v", reason, n)
		}
	}
	h.eventually("the deliverable one", 10*time.Second, func() bool { return rc.count() == 1 })
	if n := h.metric("feedbackd_dlq_records_total", nil); n != 0 {
		t.Errorf("%v dead letters for skips", n)
	}
}

// 410 Gone dead-letters the event and disables the config; later events are
// dead-lettered as endpoint_disabled (kept for replay) until it is enabled
// again.
func TestGoneDisablesConfig(t *testing.T) { testGoneDisablesConfig(t) }

func testGoneDisablesConfig(t *testing.T, opts ...option) {
	h := start(t, nil, opts...)
	var gone sync.Map
	rc := newReceiver(t, func(_ int, d delivery) int {
		if _, ok := gone.Load("yes"); ok {
			return 410
		}
		return 200
	})
	cfg := webhookConfig("org1", "sb1", rc.URL)
	h.createWebhook(cfg)
	gone.Store("yes", true)
	h.produceEvent(newEvent("gone-1", "org1", "sb1", "email", "sent"))
	h.dlq(1)
	var got map[string]any
	h.eventually("config disabled", 10*time.Second, func() bool {
		h.call("GET", "/v1/webhooks/org1/sb1", nil, &got)
		return got["enabled"] == false
	})
	if got["disabledReason"] != "endpoint answered 410 Gone" {
		t.Errorf("disabledReason %v", got["disabledReason"])
	}
	h.produceEvent(newEvent("gone-2", "org1", "sb1", "email", "sent"))
	recs := h.dlq(2)
	if recs[0].Reason != dlq.ReasonRejected || recs[0].LastStatus != 410 || recs[1].Reason != dlq.ReasonEndpointDisabled {
		t.Fatalf("dead letters: %+v / %+v", recs[0].DeadLetter, recs[1].DeadLetter)
	}
	if n := h.metric("feedbackd_endpoints_disabled_total", map[string]string{"reason": "gone"}); n != 1 {
		t.Errorf("%v configs counted as disabled by a 410, want 1", n)
	}
	if rc.count() != 1 {
		t.Fatalf("disabled endpoint called %d times", rc.count())
	}
	gone.Delete("yes")
	cfg["enabled"] = true
	got = nil // Unmarshal into a map keeps keys the answer lacks
	if code := h.call("PUT", "/v1/webhooks/org1/sb1", cfg, &got); code != 200 || got["enabled"] != true || got["disabledReason"] != nil {
		t.Fatalf("re-enable: %d %v", code, got)
	}
	h.produceEvent(newEvent("back", "org1", "sb1", "email", "sent"))
	h.eventually("delivery after re-enable", 10*time.Second, func() bool { return rc.count() == 2 })
}
