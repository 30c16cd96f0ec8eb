// Package e2e runs feedbackd end to end against real parts: a kfake broker,
// a redis-server process and HTTP receivers, through the real clients.
// Signatures are checked with the Standard Webhooks reference library.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/test/testenv"
)

const token = "e2e-admin-token-0123456789"

// secretsKey encrypts secrets at rest in the tests (32 bytes, base64).
const secretsKey = "ZTJlLXNlY3JldHMta2V5LTMyLWJ5dGVzLWxvbmctISE="

type harness struct {
	t         *testing.T
	kafka     *testenv.Kafka
	redis     *testenv.Redis
	cfg       daemon.Config
	api       string
	direct    string // the primary instance's listener itself, not through the OpenAPI-checking proxy
	reg       *prometheus.Registry
	producer  *kgo.Client
	stop      func()
	logs      io.Writer // nil: stderr, warnings only (E2E_LOG=1: debug)
	resolver  netguard.Resolver
	kafkaOpts []kfake.Opt
	tlsConfig *tls.Config               // what deliveries trust; nil: the system roots
	redisCfg  func(*daemon.RedisConfig) // nil: a redis-server of the test's own (h.redis)
	// clientOpts connect the test's own Kafka clients (producer, DLQ
	// reads) to a secured broker; ctlEnv does the same for feedbackctl.
	clientOpts []kgo.Opt
	ctlEnv     []string
}

// option adjusts a harness before feedbackd starts.
type option func(*harness)

// withLogs makes feedbackd log JSON at debug level to w.
func withLogs(w io.Writer) option { return func(h *harness) { h.logs = w } }

// withRedis points feedbackd at a Redis the test started (a Cluster, a
// Sentinel setup, a server with TLS or ACLs); h.redis stays nil.
func withRedis(set func(*daemon.RedisConfig)) option { return func(h *harness) { h.redisCfg = set } }

// withKafka starts the broker with these options.
func withKafka(opts ...kfake.Opt) option { return func(h *harness) { h.kafkaOpts = opts } }

// withKafkaClient makes the test's own Kafka clients (not feedbackd's)
// connect with these options, and feedbackctl with these variables.
func withKafkaClient(env []string, opts ...kgo.Opt) option {
	return func(h *harness) { h.clientOpts, h.ctlEnv = opts, env }
}

// withResolver makes feedbackd resolve endpoint names with r.
func withResolver(r netguard.Resolver) option { return func(h *harness) { h.resolver = r } }

// withDeliveryTLS makes feedbackd's deliveries trust what cfg trusts.
func withDeliveryTLS(cfg *tls.Config) option { return func(h *harness) { h.tlsConfig = cfg } }

// start runs feedbackd in-process on a fresh broker and Redis, with a short
// retry schedule and circuit breakers that never open (tests of retries
// count attempts; breaker tests set a threshold); mutate adjusts the
// configuration.
func start(t *testing.T, mutate func(*daemon.Config), opts ...option) *harness {
	t.Helper()
	h := &harness{t: t}
	for _, o := range opts {
		o(h)
	}
	if h.redisCfg == nil {
		h.redis = testenv.StartRedis(t)
	}
	h.kafka = testenv.StartKafka(t, h.kafkaOpts...)
	h.cfg = daemon.Defaults()
	h.cfg.Kafka.Brokers = h.kafka.Seeds
	h.cfg.Kafka.Partitions = 2
	if h.redis != nil {
		h.cfg.Redis.Addr = h.redis.URL
	} else {
		h.redisCfg(&h.cfg.Redis)
	}
	h.cfg.HTTP.Addr = "127.0.0.1:0"
	h.cfg.Admin.Token = token
	h.cfg.Secrets.Keys = []string{secretsKey}
	h.cfg.Retry.Schedule = []time.Duration{time.Second, time.Second}
	h.cfg.Retry.Jitter = 0
	h.cfg.Delivery.Timeout = 5 * time.Second
	h.cfg.Delivery.AllowHTTP = true
	h.cfg.Delivery.AllowPrivateNetworks = true
	h.cfg.Configs.CheckInterval = 200 * time.Millisecond
	h.cfg.Shutdown.Timeout = 5 * time.Second
	h.cfg.Delivery.Breaker.Threshold = 1 << 30
	h.cfg.DeliveryLog.Enabled = true // off by default; the tests read it
	if mutate != nil {
		mutate(&h.cfg)
	}
	p, err := kgo.NewClient(h.kafkaClient()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	h.producer = p
	h.startDaemon()
	t.Cleanup(func() { h.stopDaemon() })
	return h
}

// instance is one running feedbackd.
type instance struct {
	api    string
	direct string
	reg    *prometheus.Registry
	stop   func() // cancels and waits for Run to return; idempotent
}

// startDaemon (re)starts the harness's primary instance.
func (h *harness) startDaemon() {
	h.t.Helper()
	in := h.spawn()
	h.api, h.direct, h.reg, h.stop = in.api, in.direct, in.reg, in.stop
}

// spawn starts one more feedbackd instance with the harness's configuration,
// in the same consumer group; it is stopped at the end of the test.
func (h *harness) spawn() *instance {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	in := &instance{reg: prometheus.NewRegistry()}
	level := slog.LevelWarn
	if os.Getenv("E2E_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if h.logs != nil {
		log = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() {
		done <- daemon.Run(ctx, h.cfg, daemon.Options{
			Version: "e2e", Logger: log, Registry: in.reg, Resolver: h.resolver, DeliveryTLS: h.tlsConfig,
			Listening: func(a net.Addr) { addr <- a },
		})
	}()
	select {
	case a := <-addr:
		in.direct = "http://" + a.String()
		in.api = adminProxy(h.t, in.direct) // every call checked against schemas/openapi.json
	case err := <-done:
		h.t.Fatalf("feedbackd did not start: %v", err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("feedbackd did not start in 30s")
	}
	var once sync.Once
	in.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("feedbackd stopped with %v", err)
			}
		})
	}
	h.t.Cleanup(in.stop)
	h.eventually("feedbackd ready", 30*time.Second, func() bool {
		resp, err := http.Get(in.api + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return in
}

func (h *harness) stopDaemon() {
	if h.stop != nil {
		h.stop()
	}
}

func (h *harness) eventually(what string, d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call makes an admin API request and decodes a JSON answer into out.
func (h *harness) call(method, path string, body any, out any) int {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.api+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

func webhookConfig(org, sb, url string) map[string]any {
	return map[string]any{
		"imsOrg": org, "sandbox": map[string]string{"id": sb, "name": "prod"}, "name": "test " + org,
		"channels": []string{"email", "sms"}, "url": url,
	}
}

// createWebhook registers a config and returns its signing secret.
func (h *harness) createWebhook(cfg map[string]any) string {
	h.t.Helper()
	var out struct {
		SigningSecret string `json:"signingSecret"`
	}
	if code := h.call("POST", "/v1/webhooks", cfg, &out); code != http.StatusCreated || !strings.HasPrefix(out.SigningSecret, "whsec_") {
		h.t.Fatalf("create webhook: %d %+v", code, out)
	}
	return out.SigningSecret
}

type ev map[string]any

// newEvent builds a valid event; id becomes eventId when not empty.
func newEvent(id, org, sb, channel, status string) ev {
	e := ev{
		"requestId": "req-" + id, "imsOrg": org, "sandbox": map[string]any{"id": sb, "name": "prod"},
		"channel": channel, "eventType": "message.feedback",
		"messageExecution": map[string]any{"messageExecutionID": "EX-" + id, "messageType": "transactional", "campaignID": "camp-1"},
		"messageDeliveryFeedback": map[string]any{
			"feedbackStatus": map[string]any{"value": status}, "offers": nil, "retryCount": 0,
		},
		"identityMap": map[string]any{"email": []any{map[string]any{"id": "a@example.com", "primary": true}}},
	}
	if id != "" {
		e["eventId"] = id
	}
	return e
}

func (h *harness) produce(topic string, value []byte) *kgo.Record {
	h.t.Helper()
	r, err := h.producer.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: value}).First()
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) produceEvent(e ev) *kgo.Record {
	h.t.Helper()
	b, _ := json.Marshal(e)
	status := e["messageDeliveryFeedback"].(map[string]any)["feedbackStatus"].(map[string]any)["value"].(string)
	topic := "feedback." + status
	if !map[string]bool{"sent": true, "delivered": true, "bounce": true, "error": true}[status] {
		topic = "feedback.sent"
	}
	return h.produce(topic, b)
}

// dlq waits for at least n dead letters and returns all of them.
func (h *harness) dlq(n int) []dlq.Record {
	h.t.Helper()
	var recs []dlq.Record
	h.eventually(fmt.Sprintf("%d dead letters", n), 30*time.Second, func() bool {
		recs = nil
		err := dlq.Scan(context.Background(), h.kafkaClient(), "feedback.dlq", func(r dlq.Record) bool {
			recs = append(recs, r)
			return true
		})
		return err == nil && len(recs) >= n
	})
	return recs
}

// kafkaClient are the options of a test client of the harness's broker.
func (h *harness) kafkaClient() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(h.kafka.Seeds...)}, h.clientOpts...)
}

// metric sums the samples of a metric family of the primary instance whose
// labels include match.
func (h *harness) metric(name string, match map[string]string) float64 {
	h.t.Helper()
	return metricOf(h.t, h.reg, name, match)
}

// metricOf sums the samples of a metric family in reg whose labels include
// match.
func metricOf(t *testing.T, reg prometheus.Gatherer, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, match) {
				switch {
				case m.Counter != nil:
					sum += m.Counter.GetValue()
				case m.Gauge != nil:
					sum += m.Gauge.GetValue()
				case m.Histogram != nil:
					sum += float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP endpoint recording what it gets; answer decides
// the status (nil: 200).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) int // n: 1-based count of this webhook-id
	counts map[string]int
}

func newReceiver(t *testing.T, answer func(n int, d delivery) int) *receiver {
	rc := &receiver{answer: answer, counts: map[string]int{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d := delivery{header: r.Header.Clone(), body: body, at: time.Now()}
		rc.mu.Lock()
		rc.got = append(rc.got, d)
		id := r.Header.Get("webhook-id")
		rc.counts[id]++
		n := rc.counts[id]
		rc.mu.Unlock()
		status := 200
		if rc.answer != nil {
			status = rc.answer(n, d)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// verify checks a delivery's signature with the reference implementation.
func verify(t *testing.T, secret string, d delivery) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(d.body, d.header); err != nil {
		t.Fatalf("signature of %s does not verify: %v", d.header.Get("webhook-id"), err)
	}
}

// TestMain keeps go-redis's own messages (about the Redis servers that
// tests kill on purpose) out of the test output, and removes the binaries
// built for the tests.
func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{})
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds feedbackd, feedbackctl and devbroker once per test run
// and returns their directory.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "feedbackd-e2e-bin"); binErr != nil {
			return
		}
		for _, pkg := range []string{"../../cmd/feedbackd", "../../cmd/feedbackctl", "../devbroker"} {
			out, err := exec.Command("go", "build", "-o", binDir, pkg).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// ctl runs feedbackctl against the harness and returns its output and
// exit code.
func (h *harness) ctl(args ...string) (string, int) {
	h.t.Helper()
	return h.ctlAt(h.api, args...)
}

// ctlAt runs feedbackctl with the admin API at adminURL.
func (h *harness) ctlAt(adminURL string, args ...string) (string, int) {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(binaries(h.t), "feedbackctl"), args...)
	cmd.Env = append(os.Environ(), "FEEDBACKCTL_BROKERS="+strings.Join(h.kafka.Seeds, ","),
		"FEEDBACKCTL_ADMIN_URL="+adminURL, "FEEDBACKCTL_TOKEN="+token)
	cmd.Env = append(cmd.Env, h.ctlEnv...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("feedbackctl %v: %v", args, err)
	}
	return string(out), code
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
