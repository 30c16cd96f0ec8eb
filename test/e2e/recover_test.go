package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

// spread produces n events of org/prod with record timestamps every 30s
// from base (n = 60: 30 minutes), bounce and sent alternately, a third of
// them without a key (the value says whose they are), half without an
// eventId (their webhook-id is derived from where they are). It returns
// each event's webhook-id by its index.
func (h *harness) spread(org string, n int, base time.Time) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range n {
		status := []string{"bounce", "sent"}[i%2]
		id := ""
		if i%4 < 2 {
			id = fmt.Sprintf("%s-ev-%d", org, i)
		}
		key := org + "/prod"
		if i%3 == 0 {
			key = ""
		}
		rec := &kgo.Record{Topic: "feedback." + status, Key: []byte(key), Value: mustJSON(h.t, newEvent(id, org, "prod", "email", status)),
			Timestamp: base.Add(time.Duration(i) * 30 * time.Second)}
		if err := h.producer.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			h.t.Fatal(err)
		}
		ids[i] = id
		if id == "" {
			ids[i] = event.DeriveID(rec.Topic, rec.Partition, rec.Offset)
		}
	}
	return ids
}

// counts is how many times rc got each webhook-id.
func (rc *receiver) byID() map[string]int {
	out := map[string]int{}
	for _, d := range rc.deliveries() {
		out[d.header.Get("webhook-id")]++
	}
	return out
}

// recoverJob starts a recovery of orgA/prod and waits for it to end.
func (h *harness) recoverJob(body map[string]any) replay.Progress {
	h.t.Helper()
	var p replay.Progress
	if code := h.call("POST", "/v1/webhooks/orgA/prod/recover", body, &p); code != http.StatusAccepted || !strings.HasPrefix(p.ID, "rc-") {
		h.t.Fatalf("recover: %d %+v", code, p)
	}
	h.eventually("recovery "+p.ID+" done", 60*time.Second, func() bool {
		h.call("GET", "/v1/webhooks/orgA/prod/recoveries/"+p.ID, nil, &p)
		return p.State == replay.StateDone || p.State == replay.StateFailed
	})
	if p.State != replay.StateDone {
		h.t.Fatalf("recovery: %+v", p)
	}
	return p
}

// settled waits until rc has got want deliveries and no more come for a
// second.
func settled(h *harness, rc *receiver, want int) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("%d deliveries", want), 60*time.Second, func() bool { return rc.count() >= want })
	time.Sleep(time.Second)
	if got := rc.count(); got != want {
		h.t.Fatalf("%d deliveries, want %d", got, want)
	}
}

// The acceptance scenario: a tenant's events over 30 minutes and another
// tenant's in the same minutes, all delivered; a recovery of 10 of those
// minutes resends exactly the tenant's events of the window, once each,
// with their original webhook-ids, although the dedupe window remembers
// them; a new job resends them once more; a dry run resends nothing and
// counts what it would; bad requests name the field; another
// organisation's token finds nothing.
func TestRecoverResendsTheTenantsWindowOncePerJob(t *testing.T) {
	h := start(t, withAdminJWT)
	rcA, rcB := newReceiver(t, nil), newReceiver(t, nil)
	secret := h.createWebhook(webhookConfig("orgA", "prod", rcA.URL))
	h.createWebhook(webhookConfig("orgB", "prod", rcB.URL))
	base := time.Now().Add(-35 * time.Minute).Truncate(time.Millisecond)
	idsA := h.spread("orgA", 60, base)
	h.spread("orgB", 60, base)
	settled(h, rcA, 60)
	settled(h, rcB, 60)

	since, until := base.Add(10*time.Minute), base.Add(20*time.Minute)
	window := map[string]bool{}
	bounces := 0
	for i, id := range idsA[20:40] {
		window[id] = true
		if (20+i)%2 == 0 {
			bounces++
		}
	}
	body := map[string]any{"since": since.Format(time.RFC3339Nano), "until": until.Format(time.RFC3339Nano)}

	dry := h.recoverJob(map[string]any{"since": body["since"], "until": body["until"], "dryRun": true})
	if dry.Matched != 20 || dry.Replayed != 20 || !strings.HasSuffix(dry.ID, "-dry") {
		t.Fatalf("dry run: %+v", dry)
	}
	for _, r := range dry.Topics {
		if held := r.Topic == "feedback.sent" || r.Topic == "feedback.bounce"; !r.Complete || r.Earliest.IsZero() == held {
			t.Fatalf("reach of a window the topics hold: %+v", dry.Topics)
		}
	}
	onlyBounces := h.recoverJob(map[string]any{"since": body["since"], "until": body["until"], "dryRun": true, "statuses": []string{"bounce"}})
	if onlyBounces.Replayed != int64(bounces) {
		t.Fatalf("dry run of bounces: %+v, want %d", onlyBounces, bounces)
	}
	time.Sleep(time.Second)
	if rcA.count() != 60 {
		t.Fatalf("a dry run sent %d", rcA.count()-60)
	}

	first := h.recoverJob(body)
	if first.Matched != 20 || first.Replayed != 20 || first.Skipped != 0 {
		t.Fatalf("recovery: %+v", first)
	}
	settled(h, rcA, 80)
	settled(h, rcB, 60)
	for id, n := range rcA.byID() {
		if want := map[bool]int{true: 2, false: 1}[window[id]]; n != want {
			t.Fatalf("%s delivered %d times, want %d", id, n, want)
		}
	}
	for _, d := range rcA.deliveries()[60:] {
		verify(t, secret, d)
		var got map[string]any
		_ = json.Unmarshal(d.body, &got)
		if got["imsOrg"] != "orgA" || got["eventId"] != nil {
			t.Fatalf("recovered body: %s", d.body)
		}
	}

	// A new job is a new explicit recovery: once more, once.
	second := h.recoverJob(body)
	if second.ID == first.ID || second.Replayed != 20 {
		t.Fatalf("second recovery: %+v", second)
	}
	settled(h, rcA, 100)
	for id := range window {
		if n := rcA.byID()[id]; n != 3 {
			t.Fatalf("%s delivered %d times after two recoveries, want 3", id, n)
		}
	}

	var list struct{ Recoveries []replay.Progress }
	if code := h.call("GET", "/v1/webhooks/orgA/prod/recoveries", nil, &list); code != 200 || len(list.Recoveries) != 4 || list.Recoveries[0].ID != second.ID {
		t.Fatalf("list: %d %+v", code, list)
	}

	// feedbackctl: the same job, as an operator runs it.
	out, code := h.ctl("webhooks", "recover", "orgA", "prod", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), "--dry-run")
	if code != 0 || !strings.Contains(out, "20 would be resent") || !strings.Contains(out, "every input topic still holds the whole window") ||
		!strings.Contains(out, "would resend 20") || regexp.MustCompile(`\d resent`).MatchString(out) {
		t.Fatalf("feedbackctl webhooks recover --dry-run (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("webhooks", "recover", "orgA", "prod", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), "--status", "bounce", "--rate", "100", "-o", "json")
	var viaCLI replay.Progress
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &viaCLI); code != 0 || err != nil || viaCLI.Replayed != int64(bounces) || viaCLI.State != replay.StateDone {
		t.Fatalf("feedbackctl webhooks recover -o json (exit %d, %v):\n%s", code, err, out)
	}
	settled(h, rcA, 100+bounces)
	if out, code := h.ctl("webhooks", "recoveries", "orgA", "prod"); code != 0 || !strings.Contains(out, viaCLI.ID) {
		t.Fatalf("feedbackctl webhooks recoveries (exit %d):\n%s", code, out)
	}

	// Bad input: a 400 naming the field.
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	for _, c := range []struct {
		body  string
		field string
	}{
		{`{"until":"2026-12-01T10:00:00Z"}`, "since"},
		{`{"since":"2026-12-01T10:00:00Z"}`, "until"},
		{`{"since":"last tuesday","until":"2026-12-01T10:00:00Z"}`, "since"},
		{`{"since":"2026-12-01T10:00:00Z","until":"2026-12-01T25:00:00Z"}`, "until"},
		{`{"since":"2026-12-01T11:00:00Z","until":"2026-12-01T10:00:00Z"}`, "since"},
		{`{"since":"` + future + `","until":"` + future + `"}`, "since"},
		{`{"since":"2h","until":"1h","statuses":["opened"]}`, "statuses"},
		{`{"since":"2h","until":"1h","rate":0}`, "rate"},
		{`{"since":"2h","until":"1h","rate":-3}`, "rate"},
		{`{"since":"2h","until":"1h","org":"orgB"}`, "org"},
	} {
		var e struct{ Error struct{ Code, Field string } }
		var req map[string]any
		_ = json.Unmarshal([]byte(c.body), &req)
		if code := h.callInvalid("POST", "/v1/webhooks/orgA/prod/recover", req, &e); code != 400 || e.Error.Field != c.field || e.Error.Code != "invalid_request" {
			t.Errorf("%s: %d %+v, want 400 naming %s", c.body, code, e, c.field)
		}
	}
	if out, code := h.ctlInvalid("webhooks", "recover", "orgA", "prod", "--since", "1h", "--until", "2h"); code == 0 || !strings.Contains(out, "--since") {
		t.Errorf("feedbackctl with since after until (exit %d):\n%s", code, out)
	}
	// An --until in the future is now.
	if p := h.recoverJob(map[string]any{"since": base.Add(-time.Minute).Format(time.RFC3339), "until": future, "dryRun": true}); p.Replayed != 60 {
		t.Errorf("a window up to the future: %+v", p)
	}

	// Scope: orgB's token finds neither orgA's config nor its jobs; a
	// config that does not exist is not found.
	tokB := adminJWT(t, "org:orgB", time.Hour, adminJWTSecret)
	if code := h.callAs(tokB, "POST", "/v1/webhooks/orgA/prod/recover", body, nil); code != 404 {
		t.Errorf("orgB recovering orgA's config: %d", code)
	}
	if code := h.callAs(tokB, "GET", "/v1/webhooks/orgA/prod/recoveries/"+first.ID, nil, nil); code != 404 {
		t.Errorf("orgB reading orgA's job: %d", code)
	}
	if code := h.callAs(tokB, "GET", "/v1/webhooks/orgB/prod/recoveries/"+first.ID, nil, nil); code != 404 {
		t.Errorf("orgA's job under orgB's config: %d", code)
	}
	var none struct{ Recoveries []replay.Progress }
	if code := h.callAs(tokB, "GET", "/v1/webhooks/orgB/prod/recoveries", nil, &none); code != 200 || len(none.Recoveries) != 0 {
		t.Errorf("orgB's own list: %d %+v", code, none)
	}
	if out, code := h.ctl("webhooks", "recoveries", "orgB", "prod"); code != 0 || strings.TrimSpace(out) != "no recoveries" {
		t.Errorf("feedbackctl webhooks recoveries of none (exit %d):\n%s", code, out)
	}
	if code := h.call("POST", "/v1/webhooks/orgA/nope/recover", body, nil); code != 404 {
		t.Errorf("no such config: %d", code)
	}
	settled(h, rcB, 60)
}

// A recovery interrupted by its instance's stop is resumed when feedbackd
// is up again, and resends each event of the window exactly once.
func TestRecoverInterruptedAndResumedResendsOnce(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("orgA", "prod", rc.URL))
	base := time.Now().Add(-35 * time.Minute).Truncate(time.Millisecond)
	ids := h.spread("orgA", 60, base)
	settled(h, rc, 60)

	var p replay.Progress
	body := map[string]any{"since": base.Format(time.RFC3339Nano), "until": base.Add(20 * time.Minute).Format(time.RFC3339Nano), "rate": 8}
	if code := h.call("POST", "/v1/webhooks/orgA/prod/recover", body, &p); code != http.StatusAccepted {
		t.Fatalf("recover: %d %+v", code, p)
	}
	h.eventually("some resent", 30*time.Second, func() bool {
		h.call("GET", "/v1/webhooks/orgA/prod/recoveries/"+p.ID, nil, &p)
		return p.Replayed >= 8
	})
	h.stopDaemon()
	h.startDaemon()
	h.eventually("the job resumed to its end", 60*time.Second, func() bool {
		h.call("GET", "/v1/webhooks/orgA/prod/recoveries/"+p.ID, nil, &p)
		return p.State == replay.StateDone || p.State == replay.StateFailed
	})
	if p.State != replay.StateDone || p.Replayed != 40 || p.Matched != 40 {
		t.Fatalf("resumed job: %+v", p)
	}
	settled(h, rc, 100)
	got := rc.byID()
	for i, id := range ids {
		if want := map[bool]int{true: 2, false: 1}[i < 40]; got[id] != want {
			t.Fatalf("event %d (%s) delivered %d times, want %d", i, id, got[id], want)
		}
	}
}
