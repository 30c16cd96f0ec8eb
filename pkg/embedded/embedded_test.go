package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

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

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// What `make run` promises a new user: within seconds, a banner and lines
// showing events consumed, signed deliveries verified by the receiver, a
// retry, and a dead-lettered event.
func TestEmbeddedDemoShowsEveryPath(t *testing.T) {
	o := Options{
		KafkaAddr: freeAddr(t), RedisAddr: freeAddr(t), DataDir: t.TempDir(),
		Demo: true, ReceiverAddr: freeAddr(t), Interval: 200 * time.Millisecond,
	}
	var logs, banner syncBuffer
	o.Banner = &banner
	cfg := daemon.Defaults()
	cfg.HTTP.Addr = freeAddr(t)
	Adjust(&cfg, func(key string) bool { return key == "http.addr" }, o) // as with --http-addr
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, o, daemon.Options{Version: "test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	want := []string{
		"webhook configs loaded",
		"demo webhook registered through the admin API",
		"signature verified: webhook accepted",
		"msg=delivered",
		`msg="retry scheduled"`,
		"attempt=2 http_status=200", // the retry delivered
		"reason=invalid_event",
		"reason=rejected",
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		missing := ""
		for _, w := range want {
			if !strings.Contains(logs.String(), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the demo's output:\n%s", missing, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	console := "http://" + cfg.HTTP.Addr + "/ui/"
	for _, w := range []string{"EMBEDDED MODE", "NOT for production", o.KafkaAddr, "kcat -P", "feedbackctl produce", "curl", DemoToken,
		"Web console            " + console} {
		if !strings.Contains(banner.String(), w) {
			t.Errorf("banner lacks %q:\n%s", w, banner.String())
		}
	}
	// The delivery log works on miniredis: streams with MAXLEN and MINID
	// trimming, counts, health.
	for _, path := range []string{"/attempts?type=message.attempt&limit=5", "/health"} {
		var page map[string]any
		code := getJSON(t, "http://"+cfg.HTTP.Addr+"/v1/webhooks/"+demoOrg+"/"+demoSandbox+path, &page)
		if recs, _ := page["records"].([]any); code != 200 || (path != "/health" && len(recs) == 0) {
			t.Errorf("GET %s: %d %v", path, code, page)
		}
	}
	if !strings.Contains(banner.String(), "feedbackctl webhooks attempts "+demoOrg) {
		t.Errorf("banner lacks the delivery log:\n%s", banner.String())
	}
	// The console shows the demo webhook and its dead letters, signed in
	// with the demo token over plain HTTP.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.PostForm(console+"signin", url.Values{"token": {DemoToken}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Demo receiver") {
		t.Errorf("the console's inventory after signing in with the demo token:\n%s", page)
	}
	resp, err = client.Get(console + "dlq")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "rejected") || !strings.Contains(string(page), "invalid_event") {
		t.Errorf("the console's dead letters:\n%s", page)
	}
	// ... and its deliveries and retries in the delivery log.
	resp, err = client.Get(console + "webhooks/" + demoOrg + "/" + demoSandbox + "/log")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"delivered", "retryable", "dead_lettered", "Success rate"} {
		if !strings.Contains(string(page), w) {
			t.Errorf("the console's delivery log lacks %q:\n%s", w, page)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("embedded run ended with %v", err)
	}
	if strings.Contains(logs.String(), "signature INVALID") {
		t.Fatal("the demo receiver refused a signature")
	}
}

// Embedded mode never disables a config for failing, unless told to.
func TestAdjustTurnsAutoDisableOff(t *testing.T) {
	for _, set := range []bool{false, true} {
		cfg := daemon.Defaults()
		cfg.Delivery.DisableAfter = time.Hour
		Adjust(&cfg, func(k string) bool { return set && k == "delivery.disable_after" }, Options{DataDir: t.TempDir()})
		want := time.Duration(0)
		if set {
			want = time.Hour
		}
		if cfg.Delivery.DisableAfter != want {
			t.Errorf("set %v: delivery.disable_after %s, want %s", set, cfg.Delivery.DisableAfter, want)
		}
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+DemoToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}
