package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// One run with every kind of secret; then logs, metrics, every API answer,
// the dead letters and the stored configs are searched for them.
func TestNoSecretLeaks(t *testing.T) {
	var logs syncBuffer
	h := start(t, func(c *daemon.Config) {
		c.Admin.JWT.HMACSecret = adminJWTSecret
		c.Secrets.RotationGrace = time.Hour
	}, withLogs(&logs))
	ts := newTokenServer(t)
	rc := newReceiver(t, func(_ int, d delivery) int {
		if strings.Contains(string(d.body), "reject-me") {
			return 400
		}
		return 200
	})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	hsSecret := "hs256-shared-secret-that-must-not-leak-anywhere"
	clientSecret := "oauth2-client-secret-that-must-not-leak"

	secrets := map[string]string{
		"admin token": token, "admin JWT secret": adminJWTSecret, "encryption key": secretsKey,
		"HS256 secret": hsSecret, "client secret": clientSecret,
		"RSA private key": strings.Split(pemKey, "\n")[3], // a line of the key's body
	}
	mk := func(org string, auth map[string]any) {
		cfg := webhookConfig(org, "sb", rc.URL)
		if auth != nil {
			cfg["auth"] = auth
		}
		var out map[string]any
		if code := h.call("POST", "/v1/webhooks", cfg, &out); code != 201 {
			t.Fatalf("create %s: %d %v", org, code, out)
		}
		secrets["signing secret of "+org] = out["signingSecret"].(string)
		if s, ok := out["jwtSecret"].(string); ok {
			secrets["generated HS256 secret of "+org] = s
		}
	}
	mk("orgNone", nil)
	mk("orgHS", map[string]any{"type": "jwt", "algorithm": "HS256", "secret": hsSecret})
	mk("orgHSgen", map[string]any{"type": "jwt", "algorithm": "HS256"})
	mk("orgRS", map[string]any{"type": "jwt", "algorithm": "RS256", "privateKey": pemKey})
	mk("orgOA", map[string]any{"type": "oauth2", "tokenUrl": ts.URL + "/token", "clientId": "cid", "clientSecret": clientSecret})
	var rot map[string]any
	h.call("POST", "/v1/webhooks/orgNone/sb/rotate-secret", nil, &rot)
	secrets["rotated signing secret"] = rot["signingSecret"].(string)
	h.call("POST", "/v1/webhooks/orgHSgen/sb/rotate-key", nil, &rot)
	secrets["rotated HS256 secret"] = rot["jwtSecret"].(string)

	for _, org := range []string{"orgNone", "orgHS", "orgHSgen", "orgRS", "orgOA"} {
		h.produceEvent(newEvent("ok-"+org, org, "sb", "email", "sent"))
		e := newEvent("bad-"+org, org, "sb", "email", "sent")
		e["requestId"] = "reject-me"
		h.produceEvent(e)
	}
	h.produce("feedback.sent", []byte(`{"imsOrg":"orgNone","secret":"x"`))
	h.eventually("deliveries and dead letters", 30*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_total", nil) == 10
	})
	for i := int32(1); i <= ts.requests.Load(); i++ {
		secrets[fmt.Sprintf("access token %d", i)] = fmt.Sprintf("tok-%d", i)
	}

	// What operators and tenants can see.
	seen := map[string]string{"logs": logs.String(), "metrics": string(scrapeMetrics(t, h))}
	api := func(path string) string {
		req, _ := http.NewRequest("GET", h.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var job map[string]any
	h.call("POST", "/v1/dlq/replays", map[string]any{"dryRun": true}, &job)
	seen["API"] = api("/v1/webhooks") + api("/.well-known/jwks.json") + api("/v1/dlq/replays/"+job["id"].(string)) + api("/readyz")
	for _, org := range []string{"orgNone", "orgHS", "orgHSgen", "orgRS", "orgOA"} {
		seen["API"] += api("/v1/webhooks/" + org + "/sb")
	}
	out, _ := h.ctl("dlq", "list", "--limit", "0", "-o", "json")
	seen["dead letters"] = out
	out, _ = h.ctl("dlq", "stats", "-o", "json")
	seen["dead letters"] += out
	for where, text := range seen {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s found in the %s", what, where)
			}
		}
	}
	if strings.Contains(seen["logs"], "PRIVATE KEY") || strings.Contains(seen["API"], "PRIVATE KEY") {
		t.Error("a private key is shown")
	}

	// Where configs are stored: every stored secret is encrypted.
	stored := redisDump(t, h) + configsTopicDump(t, h)
	if !strings.Contains(stored, "enc:v1:") {
		t.Fatal("no encrypted values found where configs are stored")
	}
	for what, secret := range secrets {
		if strings.HasPrefix(what, "access token") || what == "admin token" || what == "admin JWT secret" || what == "encryption key" {
			continue
		}
		if strings.Contains(stored, secret) {
			t.Errorf("%s stored in the clear", what)
		}
	}
}

func redisDump(t *testing.T, h *harness) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := h.redis.Client.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch h.redis.Client.Type(ctx, k).Val() {
		case "hash":
			for f, v := range h.redis.Client.HGetAll(ctx, k).Val() {
				b.WriteString(k + " " + f + " " + v + "\n")
			}
		case "string":
			b.WriteString(k + " " + h.redis.Client.Get(ctx, k).Val() + "\n")
		}
	}
	return b.String()
}

func configsTopicDump(t *testing.T, h *harness) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.kafka.Seeds...), kgo.ConsumeTopics("feedback.configs"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Until none has come for a second after the first, waited for up to
	// 15 s (a new client's first fetch can take seconds on a loaded machine;
	// the topic holds the configs stored above).
	var b strings.Builder
	wait := 15 * time.Second
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { b.Write(r.Value); b.WriteByte('\n'); n++ })
		if n == 0 && b.Len() == 0 {
			t.Fatal("no record read from feedback.configs in 15 s")
		}
		if n == 0 {
			return b.String()
		}
		wait = time.Second
	}
}
