package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// One JSON line per final outcome at info and per attempt at debug, with
// the fields operators search by; never a signing secret, the admin token
// or credentials from a URL.
func TestLogsCarryOutcomesNotSecrets(t *testing.T) {
	var logs syncBuffer
	h := start(t, nil, withLogs(&logs))
	rc := newReceiver(t, func(n int, _ delivery) int {
		if n == 1 {
			return 503
		}
		return 200
	})
	secret := h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.produceEvent(newEvent("logged-1", "org1", "sb1", "sms", "bounce"))
	h.eventually("delivery after a retry", 20*time.Second, func() bool { return rc.count() == 2 })
	// A URL with credentials is refused, and the refusal does not echo them.
	bad := webhookConfig("org2", "sb1", "https://user:hunter2secret@hooks.example.com/x")
	var apiErr map[string]any
	if code := h.call("POST", "/v1/webhooks", bad, &apiErr); code != 400 {
		t.Fatalf("URL with credentials: %d", code)
	}
	h.stopDaemon()

	out := logs.String()
	for _, s := range []string{secret, secret[len("whsec_"):], token, "hunter2secret"} {
		if strings.Contains(out, s) {
			t.Fatalf("logs contain a secret (%q...)", s[:8])
		}
	}
	if b, _ := json.Marshal(apiErr); strings.Contains(string(b), "hunter2secret") {
		t.Fatal("API error echoes URL credentials")
	}
	var outcomes, attempts []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		switch {
		case line["msg"] == "attempt" && line["level"] == "DEBUG":
			attempts = append(attempts, line)
		case (line["msg"] == "delivered" || line["msg"] == "retry scheduled") && line["level"] == "INFO":
			outcomes = append(outcomes, line)
		}
	}
	if len(attempts) != 2 || len(outcomes) != 2 {
		t.Fatalf("%d attempt lines, %d outcome lines; want 2 and 2", len(attempts), len(outcomes))
	}
	for _, l := range outcomes {
		for _, k := range []string{"webhook_id", "org", "sandbox", "status", "attempt", "http_status", "source"} {
			if l[k] == nil {
				t.Errorf("%s line lacks %s: %v", l["msg"], k, l)
			}
		}
	}
	if outcomes[0]["error"] != "http_503" {
		t.Errorf("retry line error = %v, want the classified http_503", outcomes[0]["error"])
	}
}

// /readyz fails while Redis or Kafka is unreachable and recovers by itself.
func TestReadinessFollowsDependencies(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.Configs.CheckInterval = 100 * time.Millisecond })
	ready := func() (int, string) {
		resp, err := http.Get(h.api + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(what string, want int, mention string) {
		t.Helper()
		h.eventually(what, 30*time.Second, func() bool {
			code, body := ready()
			return code == want && strings.Contains(body, mention)
		})
	}
	waitReady("ready at start", 200, `"redis": "ok"`)

	h.redis.Kill()
	waitReady("not ready without Redis", 503, `"redis"`)
	h.redis.Restart(t) // empty: configs must be rebuilt before it is ready
	waitReady("ready again with Redis back", 200, `"configs": "ok"`)

	port := h.kafka.Cluster.ListenAddrs()[0]
	h.kafka.Cluster.Close()
	waitReady("not ready without Kafka", 503, `"kafka"`)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(portOf(t, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	waitReady("ready again with Kafka back", 200, `"kafka": "ok"`)
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var p int
	for _, c := range addr[i+1:] {
		p = p*10 + int(c-'0')
	}
	return p
}

// Consumer lag is measured per topic, retry tiers included, so a backlog of
// pending retries is visible; the input topic's lag drops back to 0 once its
// records are settled.
func TestConsumerLagShowsPendingRetries(t *testing.T) {
	h := start(t, func(c *daemon.Config) {
		c.Kafka.LagInterval = 100 * time.Millisecond
		c.Retry.Schedule = []time.Duration{time.Minute}
	})
	rc := newReceiver(t, func(int, delivery) int { return 503 })
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	for i := range 10 {
		h.produceEvent(newEvent("lag-"+string(rune('a'+i)), "org1", "sb1", "email", "error"))
	}
	// All 10 are pending; those already read wait in memory (their
	// partition paused until they are due), the rest wait in Kafka.
	h.eventually("10 retries pending in feedback.retry.1m", 20*time.Second, func() bool {
		return h.metric("feedbackd_consumer_lag_records", map[string]string{"topic": "feedback.retry.1m"}) == 10 &&
			h.metric("feedbackd_retries_held", nil) > 0
	})
	h.eventually("input topic settled", 20*time.Second, func() bool {
		return h.metric("feedbackd_consumer_lag_records", map[string]string{"topic": "feedback.error"}) == 0 &&
			h.metric("feedbackd_events_consumed_total", map[string]string{"topic": "feedback.error"}) == 10
	})
}
