package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/receiver"
)

// Demo tenant.
const (
	demoOrg     = "demo-org"
	demoSandbox = "demo-sandbox"
)

type demo struct {
	cfg      daemon.Config
	o        Options
	adminURL string
	log      *slog.Logger
}

// run registers the demo webhook through the admin API, as a user would,
// serves the receiver and produces a sample event every Interval.
func (d *demo) run(ctx context.Context) error {
	rc := &receiver.Receiver{Log: d.log.With("component", "demo-receiver"), Answer: answer}
	ln, err := net.Listen("tcp", d.o.ReceiverAddr)
	if err != nil {
		return fmt.Errorf("demo receiver on %s (use --demo-receiver-addr): %w", d.o.ReceiverAddr, err)
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	secret, err := d.register(ctx)
	if err != nil {
		return err
	}
	if err := rc.SetSecrets(secret); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.cfg.Kafka.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()

	log := d.log.With("component", "demo")
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for n := 1; ; n++ {
		topic, key, value, what := sample(n)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: value}).FirstErr(); err != nil {
			return err
		}
		log.Info("sample event produced", "n", n, "topic", topic, "what", what)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// answer makes the demo show every path: requestIds ending in -retry fail
// their first attempt, -reject ones are refused for good.
func answer(d receiver.Delivery) int {
	switch {
	case strings.HasSuffix(d.RequestID, "-retry") && d.Attempt == 1:
		return http.StatusServiceUnavailable
	case strings.HasSuffix(d.RequestID, "-reject"):
		return http.StatusBadRequest
	}
	return http.StatusOK
}

var statuses = []string{"sent", "delivered", "bounce", "error"}

// sample returns the nth demo event: mostly good ones, with a retry, an
// invalid record and a rejection mixed in.
func sample(n int) (topic, key string, value []byte, what string) {
	status := statuses[(n-1)%len(statuses)]
	channel := []string{"email", "sms"}[n%2]
	suffix, what := "", "delivered on the first attempt"
	switch n % 6 {
	case 2:
		suffix, what = "-retry", "receiver answers 503 once: retried, then delivered"
	case 4:
		suffix, what = "-reject", "receiver answers 400: dead-lettered as rejected"
	}
	topic, key = "feedback."+status, demoOrg+"/"+demoSandbox
	if n%6 == 5 {
		return topic, key, []byte(`{"requestId":"demo-broken","imsOrg":"demo-org"`), "not JSON: dead-lettered as invalid_event"
	}
	ev := map[string]any{
		"requestId": fmt.Sprintf("demo-%04d%s", n, suffix),
		"imsOrg":    demoOrg,
		"sandbox":   map[string]string{"id": demoSandbox, "name": "demo"},
		"channel":   channel,
		"messageExecution": map[string]string{
			"messageExecutionID": fmt.Sprintf("DEMO-%d", n), "messageType": "transactional",
			"campaignID": "demo-campaign",
		},
		"messageDeliveryFeedback": map[string]any{
			"feedbackStatus": map[string]string{"value": status},
			"retryCount":     0,
		},
		"identityMap": map[string]any{channel: []map[string]any{{"id": "someone@example.com", "primary": true}}},
	}
	value, _ = json.Marshal(ev)
	return topic, key, value, what
}

// register creates the demo webhook, replacing one left by an earlier run
// (its secret is not readable, by design).
func (d *demo) register(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"imsOrg": demoOrg, "sandbox": map[string]string{"id": demoSandbox, "name": "demo"},
		"name": "Demo receiver", "channels": []string{"email", "sms"},
		"url":     "http://" + d.o.ReceiverAddr + "/webhook",
		"headers": map[string]string{"X-Demo": "feedbackd"},
	})
	for attempt := 0; ; attempt++ {
		status, resp, err := d.call(ctx, http.MethodPost, "/v1/webhooks", body)
		switch {
		case err != nil:
			return "", err
		case status == http.StatusCreated:
			var c struct {
				SigningSecret string `json:"signingSecret"`
			}
			if err := json.Unmarshal(resp, &c); err != nil {
				return "", err
			}
			d.log.Info("demo webhook registered through the admin API", "component", "demo", "imsOrg", demoOrg, "sandbox", demoSandbox)
			return c.SigningSecret, nil
		case status == http.StatusConflict && attempt < 3:
			if _, _, err := d.call(ctx, http.MethodDelete, "/v1/webhooks/"+demoOrg+"/"+demoSandbox, nil); err != nil {
				return "", err
			}
		case status == http.StatusServiceUnavailable && attempt < 100: // configs still loading
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		default:
			return "", fmt.Errorf("register demo webhook: HTTP %d: %s", status, resp)
		}
	}
}

func (d *demo) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.adminURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.cfg.Admin.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), errors.Join(err)
}
