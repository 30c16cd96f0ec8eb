package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// otherKey is a secrets key the harness's configs were not sealed with.
const otherKey = "b3RoZXItc2VjcmV0cy1rZXktMzItYnl0ZXMtbG9uZyE="

func keyID(t *testing.T, b64 string) string {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:4])
}

// runDaemon starts feedbackd with cfg and returns its admin address, or
// the error Run returned before it listened... or after (refused start).
func runDaemon(t *testing.T, cfg daemon.Config) (api string, done <-chan error, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(ctx, cfg, daemon.Options{Version: "e2e", Registry: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Listening: func(a net.Addr) { addr <- a }})
	}()
	select {
	case a := <-addr:
		api = "http://" + a.String()
	case <-time.After(30 * time.Second):
		t.Fatal("feedbackd did not listen in 30s")
	}
	return api, errc, cancel
}

// A restart with a secrets key that does not open the stored secrets is
// refused, naming the missing key id, instead of dead-lettering every
// event as the tenants' fault.
func TestStartRefusedWithoutTheSecretsKey(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.stopDaemon()

	cfg := h.cfg
	cfg.Secrets.Keys = []string{otherKey}
	_, done, stop := runDaemon(t, cfg)
	defer stop()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "key id "+keyID(t, secretsKey)) || !strings.Contains(err.Error(), "secrets.keys") {
			t.Fatalf("Run = %v, want a refusal naming key id %s", err, keyID(t, secretsKey))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("feedbackd started with a key that does not open the stored secrets")
	}
}

// A config re-sealed by another instance with a key this one lacks (a
// key rotation rolled out to some instances only): this instance's events
// for it wait, none is dead-lettered, /readyz names the secrets, the test
// send says so; restarted with the key, it delivers them.
func TestEventsWaitForAMissingSecretsKey(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	cfg := webhookConfig("org1", "sb1", rc.URL)
	h.createWebhook(cfg)

	// The other instance has the new key first; it consumes nothing.
	rotated := h.cfg
	rotated.Secrets.Keys = []string{otherKey, secretsKey}
	rotated.Kafka.Group = "writer-only"
	rotated.Kafka.Topics.Input = []string{"unused.input"}
	writer, _, stopWriter := runDaemon(t, rotated)
	defer stopWriter()
	req, _ := http.NewRequest("PUT", writer+"/v1/webhooks/org1/sb1", strings.NewReader(string(mustJSON(t, cfg))))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT through the other instance: %v %v", resp, err)
	}
	resp.Body.Close()

	h.produceEvent(newEvent("evt-waits", "org1", "sb1", "email", "sent"))
	h.eventually("readyz to name the secrets", 20*time.Second, func() bool {
		resp, err := http.Get(h.api + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "key id "+keyID(t, otherKey))
	})
	var e struct{ Error struct{ Code string } }
	if code := h.call("POST", "/v1/webhooks/org1/sb1/test", nil, &e); code != http.StatusServiceUnavailable || e.Error.Code != "secrets_key_missing" {
		t.Errorf("test send: %d %+v, want 503 secrets_key_missing", code, e)
	}
	time.Sleep(time.Second)
	if n := rc.count(); n != 0 {
		t.Fatalf("the receiver got %d requests", n)
	}
	if n := h.metric("feedbackd_dlq_records_total", nil); n != 0 {
		t.Fatalf("%v dead letters, want none", n)
	}

	h.stopDaemon()
	h.cfg.Secrets.Keys = rotated.Secrets.Keys
	h.startDaemon()
	h.eventually("the waiting event delivered after the restart with the key", 30*time.Second, func() bool { return rc.count() == 1 })
	if n := h.metric("feedbackd_dlq_records_total", nil); n != 0 {
		t.Errorf("%v dead letters, want none", n)
	}
}
