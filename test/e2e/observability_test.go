package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("FEEDBACKD_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not found; `make test` installs it (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed; run `make test` to install it", name)
	}
	return p
}

// A real Prometheus scrapes feedbackd during an end-to-end run, with the
// shipped alert rules loaded, and a PromQL query over its API returns the
// delivered count the receiver saw. The same scrape passes
// `promtool check metrics`, and every dashboard query uses only metrics it
// contains.
func TestPrometheusSeesWhatTheReceiverSaw(t *testing.T) {
	prom := requireTool(t, "prometheus", "prometheus")
	promtool := requireTool(t, "promtool", "prometheus")
	h := start(t, nil)
	rc := newReceiver(t, func(n int, d delivery) int {
		if strings.HasSuffix(d.header.Get("webhook-id"), "-flaky") && n == 1 {
			return 503
		}
		if strings.HasSuffix(d.header.Get("webhook-id"), "-bad") {
			return 400
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	dir := t.TempDir()
	rules, _ := filepath.Abs("../../config/prometheus/alerts.yml")
	promAddr := freeAddr(t)
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: feedbackd
    static_configs: [{targets: [%q]}]
`, rules, strings.TrimPrefix(h.api, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startProc(t, ctx, "prometheus", exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr))
	p.waitFor(t, "Server is ready to receive web requests", 60*time.Second)

	const n = 40
	for i := range n {
		suffix := ""
		switch i % 8 {
		case 3:
			suffix = "-flaky"
		case 5:
			suffix = "-bad"
		}
		h.produceEvent(newEvent(fmt.Sprintf("obs-%d%s", i, suffix), "org1", "sb1", []string{"email", "sms"}[i%2], "delivered"))
	}
	h.produce("feedback.sent", []byte("not json"))
	// 5 of 40 are rejected, 5 flaky ones need a second attempt.
	h.eventually("every event settled", 30*time.Second, func() bool {
		return h.metric("feedbackd_deliveries_total", nil) == n
	})
	// The receiver answered 2xx once per delivered event.
	ok := 0
	for id, c := range rc.snapshotCounts() {
		if !strings.HasSuffix(id, "-bad") && (c == 1 || strings.HasSuffix(id, "-flaky")) {
			ok++
		}
	}
	if ok != 35 {
		t.Fatalf("receiver accepted %d events, want 35", ok)
	}
	var got float64
	h.eventually("Prometheus to see every delivery", 30*time.Second, func() bool {
		v, err := promQuery(promAddr, `sum(feedbackd_deliveries_total{job="feedbackd",result="delivered"})`)
		got = v
		return err == nil && v == float64(ok)
	})
	t.Logf("Prometheus: %v delivered; receiver: %d", got, ok)
	if v, err := promQuery(promAddr, `sum(feedbackd_dlq_records_total{job="feedbackd"})`); err != nil || v != 6 {
		t.Errorf("dead letters in Prometheus: %v, %v; want 6 (5 rejected + 1 invalid)", v, err)
	}
	if v, err := promQuery(promAddr, `count(ALERTS)`); err == nil && v > 0 {
		t.Logf("alerts pending or firing: %v (rules loaded and evaluated)", v)
	}
	if v, err := promQuery(promAddr, `count(feedbackd_build_info{version="e2e"})`); err != nil || v != 1 {
		t.Errorf("build_info: %v, %v", v, err)
	}

	scrape := scrapeMetrics(t, h)
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	checkDashboard(t, scrape)
}

func (rc *receiver) snapshotCounts() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.counts))
	for k, v := range rc.counts {
		out[k] = v
	}
	return out
}

func promQuery(addr, q string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" || len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("no result for %s", q)
	}
	return strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
}

func scrapeMetrics(t *testing.T, h *harness) []byte {
	t.Helper()
	resp, err := http.Get(h.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var metricName = regexp.MustCompile(`\b(feedbackd_[a-zA-Z0-9_]+|go_[a-zA-Z0-9_]+|process_[a-zA-Z0-9_]+)\b`)

// checkDashboard parses config/grafana/feedbackd.json and checks that every
// panel but a row has queries and every metric they name is in the scrape.
func checkDashboard(t *testing.T, scrape []byte) {
	t.Helper()
	exported := map[string]bool{}
	for _, line := range strings.Split(string(scrape), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					exported[f[2]+s] = true
				}
			}
		}
	}
	raw, err := os.ReadFile("../../config/grafana/feedbackd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if len(dash.Panels) < 12 {
		t.Fatalf("dashboard has %d panels", len(dash.Panels))
	}
	exprs := map[string][]string{}
	for _, p := range dash.Panels {
		if p.Type == "row" { // a heading: no query
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs[p.Title] = append(exprs[p.Title], tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if s, ok := v.Query.(string); ok {
			exprs["templating"] = append(exprs["templating"], s)
		}
	}
	for title, es := range exprs {
		for _, e := range es {
			names := metricName.FindAllString(e, -1)
			if len(names) == 0 && title != "templating" {
				t.Errorf("panel %q: query names no feedbackd metric: %s", title, e)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("panel %q uses %s, which feedbackd does not export", title, n)
				}
			}
		}
	}
}
