package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

// outage is a tenant endpoint that is down (503) until it comes back, and
// counts, per webhook-id, the deliveries it accepted.
type outage struct {
	*receiver
	down     atomic.Bool
	mu       sync.Mutex
	accepted map[string]int
}

func newOutage(t *testing.T) *outage {
	o := &outage{accepted: map[string]int{}}
	o.down.Store(true)
	o.receiver = newReceiver(t, func(_ int, d delivery) int {
		if o.down.Load() {
			return 503
		}
		o.mu.Lock()
		o.accepted[d.header.Get("webhook-id")]++
		o.mu.Unlock()
		return 200
	})
	return o
}

func (o *outage) acceptedIDs() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.accepted))
	for k, v := range o.accepted {
		out[k] = v
	}
	return out
}

// produceMany produces n events per org, eventIds "<org>-<i>".
func (h *harness) produceMany(n int, orgs ...string) {
	h.t.Helper()
	for _, org := range orgs {
		for i := range n {
			b := mustJSON(h.t, newEvent(fmt.Sprintf("%s-%d", org, i), org, "sb", "email", "bounce"))
			h.producer.Produce(context.Background(), &kgo.Record{Topic: "feedback.bounce", Key: []byte(org + "/sb"), Value: b}, nil)
		}
	}
	if err := h.producer.Flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func quickExhaustion(c *daemon.Config) {
	c.Retry.Schedule = []time.Duration{time.Second}
	c.Kafka.Partitions = 3
}

// The acceptance scenario: endpoint down, 1,000 events dead-lettered;
// endpoint back; `dlq replay --org X` delivers exactly org X's, once each,
// with the same webhook-ids, and leaves org Y's; a second identical replay
// sends nothing new; --dry-run changes nothing.
func TestReplayDeliversExactlyTheFilteredDeadLetters(t *testing.T) {
	h := start(t, quickExhaustion)
	ep := newOutage(t)
	h.createWebhook(webhookConfig("orgX", "sb", ep.URL))
	h.createWebhook(webhookConfig("orgY", "sb", ep.URL))
	h.produceMany(500, "orgX", "orgY")
	h.eventually("1,000 dead letters", 90*time.Second, func() bool {
		return h.metric("feedbackd_dlq_records_total", map[string]string{"reason": "retries_exhausted"}) == 1000
	})
	ep.down.Store(false)
	requests := ep.count()

	// --dry-run: counts only; no offsets move, nothing is written or sent.
	adm := kadm.NewClient(h.producer)
	inputEnds := func() int64 {
		ends, err := adm.ListEndOffsets(context.Background(), "feedback.bounce")
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum
	}
	endsBefore := inputEnds()
	jobID := replay.Request{Org: "orgX"}.ID()
	out, code := h.ctl("dlq", "replay", "--org", "orgX", "--dry-run")
	if code != 0 || !strings.Contains(out, "500 match, 500 would be replayed") || !strings.Contains(out, "nothing was written") ||
		regexp.MustCompile(`\d replayed`).MatchString(out) {
		t.Fatalf("dry run (exit %d):\n%s", code, out)
	}
	time.Sleep(time.Second)
	if inputEndsAfter := inputEnds(); inputEndsAfter != endsBefore {
		t.Fatalf("dry run wrote to the input topic: end offsets %d -> %d", endsBefore, inputEndsAfter)
	}
	if offs, err := adm.FetchOffsets(context.Background(), "feedbackd-replay-"+jobID); err == nil && len(offs) > 0 {
		t.Fatalf("dry run committed offsets: %v", offs)
	}
	if ep.count() != requests {
		t.Fatal("dry run made deliveries")
	}

	out, code = h.ctl("dlq", "replay", "--org", "orgX")
	if code != 0 || !strings.Contains(out, "500 matched, 500 replayed") {
		t.Fatalf("replay (exit %d):\n%s", code, out)
	}
	h.eventually("org X's 500 delivered", 60*time.Second, func() bool { return len(ep.acceptedIDs()) == 500 })
	time.Sleep(2 * time.Second) // duplicates would arrive by now
	for id, n := range ep.acceptedIDs() {
		if !strings.HasPrefix(id, "orgX-") || n != 1 {
			t.Fatalf("webhook-id %s accepted %d times", id, n)
		}
	}

	out, code = h.ctl("dlq", "replay", "--org", "orgX")
	if code != 0 || !strings.Contains(out, "0 replayed") {
		t.Fatalf("second identical replay (exit %d):\n%s", code, out)
	}
	time.Sleep(2 * time.Second)
	if got := len(ep.acceptedIDs()); got != 500 {
		t.Fatalf("second identical replay delivered something: %d accepted", got)
	}
	out, code = h.ctl("dlq", "list", "--org", "orgY", "--limit", "0", "-o", "json")
	if code != 0 || strings.Count(out, "\n") != 500 {
		t.Fatalf("org Y's dead letters: exit %d, %d lines", code, strings.Count(out, "\n"))
	}
}

// A replay interrupted half-way (Ctrl-C, then kill -9) and run again
// delivers each record exactly once.
func TestReplayInterruptedAndRestartedDeliversOnce(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			h := start(t, quickExhaustion)
			ep := newOutage(t)
			h.createWebhook(webhookConfig("orgX", "sb", ep.URL))
			h.produceMany(300, "orgX")
			h.eventually("300 dead letters", 60*time.Second, func() bool { return h.metric("feedbackd_dlq_records_total", nil) == 300 })
			ep.down.Store(false)

			cmd := exec.Command(filepath.Join(binaries(t), "feedbackctl"), "dlq", "replay", "--org", "orgX", "--rate", "100")
			cmd.Env = append(os.Environ(), "FEEDBACKCTL_BROKERS="+strings.Join(h.kafka.Seeds, ","))
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			h.eventually("part of the replay delivered", 30*time.Second, func() bool { return len(ep.acceptedIDs()) >= 60 })
			_ = cmd.Process.Signal(sig)
			var summary strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				summary.WriteString(sc.Text() + "\n")
			}
			err := cmd.Wait()
			if sig == os.Interrupt {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(summary.String(), "run the same command again to resume") {
					t.Fatalf("Ctrl-C: %v\n%s", err, summary.String())
				}
			}
			half := len(ep.acceptedIDs())
			if half >= 300 {
				t.Fatalf("the replay finished before it was interrupted")
			}

			out, code := h.ctl("dlq", "replay", "--org", "orgX")
			if code != 0 || !strings.Contains(out, "done") {
				t.Fatalf("resumed replay (exit %d):\n%s", code, out)
			}
			h.eventually("all 300 delivered", 60*time.Second, func() bool { return len(ep.acceptedIDs()) == 300 })
			time.Sleep(2 * time.Second)
			for id, n := range ep.acceptedIDs() {
				if n != 1 {
					t.Fatalf("%s delivered %d times", id, n)
				}
			}
			t.Logf("%d delivered before the interruption, the rest after", half)
		})
	}
}

// A config disabled by hand dead-letters its events as endpoint_disabled;
// re-enabling it and replaying them delivers them.
func TestDisabledConfigReplayAfterReenable(t *testing.T) {
	h := start(t, nil)
	ep := newOutage(t)
	ep.down.Store(false)
	h.createWebhook(webhookConfig("orgD", "sb", ep.URL))
	if out, code := h.ctl("webhooks", "edit", "orgD", "sb", "--disable"); code != 0 || !strings.Contains(out, "enabled:          false") {
		t.Fatalf("disable (exit %d):\n%s", code, out)
	}
	h.produceMany(20, "orgD")
	h.eventually("20 endpoint_disabled dead letters", 30*time.Second, func() bool {
		return h.metric("feedbackd_dlq_records_total", map[string]string{"reason": dlq.ReasonEndpointDisabled}) == 20
	})
	if ep.count() != 0 {
		t.Fatal("a disabled endpoint was called")
	}
	if _, code := h.ctl("webhooks", "edit", "orgD", "sb", "--enable"); code != 0 {
		t.Fatal("enable failed")
	}
	if out, code := h.ctl("dlq", "replay", "--reason", "endpoint_disabled", "--org", "orgD"); code != 0 || !strings.Contains(out, "20 replayed") {
		t.Fatalf("replay (exit %d):\n%s", code, out)
	}
	h.eventually("20 delivered", 30*time.Second, func() bool { return len(ep.acceptedIDs()) == 20 })
}

// The admin API runs the same jobs: POST starts one (202), GET follows it;
// an identical request later finds nothing new; bad requests name the field.
func TestReplayJobThroughAdminAPI(t *testing.T) { testReplayJobThroughAdminAPI(t) }

func testReplayJobThroughAdminAPI(t *testing.T, opts ...option) {
	h := start(t, quickExhaustion, opts...)
	ep := newOutage(t)
	h.createWebhook(webhookConfig("orgY", "sb", ep.URL))
	h.produceMany(100, "orgY")
	h.eventually("100 dead letters", 60*time.Second, func() bool { return h.metric("feedbackd_dlq_records_total", nil) == 100 })
	ep.down.Store(false)

	var p replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgY", "rate": 500}, &p); code != 202 || p.ID == "" {
		t.Fatalf("start: %d %+v", code, p)
	}
	h.eventually("job done", 30*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays/"+p.ID, nil, &p)
		return p.State == replay.StateDone
	})
	if p.Replayed != 100 || p.Matched != 100 {
		t.Fatalf("job: %+v", p)
	}
	h.eventually("100 delivered", 30*time.Second, func() bool { return len(ep.acceptedIDs()) == 100 })
	var again replay.Progress
	h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgY"}, &again)
	h.eventually("second job done", 30*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays/"+again.ID, nil, &again)
		return again.State == replay.StateDone
	})
	if again.ID != p.ID || again.Replayed != 0 {
		t.Fatalf("identical request: %+v", again)
	}

	for body, field := range map[string]string{`{"reason":"nope"}`: "reason", `{"since":"yesterday"}`: "since", `{"rate":-1}`: "rate"} {
		var e struct{ Error struct{ Field string } }
		var req map[string]any
		_ = json.Unmarshal([]byte(body), &req)
		if code := h.callInvalid("POST", "/v1/dlq/replays", req, &e); code != 400 || e.Error.Field != field {
			t.Errorf("%s: %d %+v", body, code, e)
		}
	}
	if code := h.callInvalid("POST", "/v1/dlq/replays", map[string]any{"colour": "red"}, nil); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
	if code := h.call("GET", "/v1/dlq/replays/rp-0000000000000000", nil, nil); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
}

// A replayed record that fails again goes back to the dead-letter topic
// with its attempt history, and the same job does not replay it again.
func TestReplayedRecordThatFailsAgainKeepsItsHistory(t *testing.T) {
	h := start(t, quickExhaustion)
	ep := newOutage(t) // stays down
	h.createWebhook(webhookConfig("orgX", "sb", ep.URL))
	h.produceMany(1, "orgX")
	first := h.dlq(1)[0]
	if out, code := h.ctl("dlq", "replay", "--org", "orgX"); code != 0 || !strings.Contains(out, "1 replayed") {
		t.Fatalf("replay (exit %d):\n%s", code, out)
	}
	recs := h.dlq(2)
	second := recs[1]
	if recs[0].Offset > recs[1].Offset && recs[0].Partition == recs[1].Partition {
		second = recs[0]
	}
	if second.WebhookID != first.WebhookID || second.Attempts != 4 || !second.FirstAttemptAt.Equal(first.FirstAttemptAt) ||
		header.Get(second.Headers, header.ReplayCount) != "1" || header.Get(second.Headers, header.ReplayOf) != first.Coordinates() {
		t.Fatalf("history lost:\nfirst  %+v\nsecond %+v replay-of %q", first.DeadLetter, second.DeadLetter, header.Get(second.Headers, header.ReplayOf))
	}
	if out, code := h.ctl("dlq", "replay", "--org", "orgX"); code != 0 || !strings.Contains(out, "0 replayed, 1 skipped") {
		t.Fatalf("the same job replayed its own failure (exit %d):\n%s", code, out)
	}
	// A new job replays the event once: its newest dead letter, not the
	// one that was replayed already.
	if out, code := h.ctl("dlq", "replay", "--org", "orgX", "--again", "after-fix"); code != 0 || !strings.Contains(out, "1 replayed, 1 skipped") {
		t.Fatalf("--again (exit %d):\n%s", code, out)
	}
}

// Every operator command, as a person and as a script would use it.
func TestOperatorCLI(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	failing := newReceiver(t, func(int, delivery) int { return 500 })

	out, code := h.ctl("webhooks", "create", "--org", "o1", "--sandbox", "s1", "--name", "n", "--channels", "email,sms",
		"--url", rc.URL, "--header", "X-A=1")
	if code != 0 || !strings.Contains(out, "whsec_") {
		t.Fatalf("create (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("webhooks", "create", "--org", "o1", "--sandbox", "s1", "--name", "n", "--channels", "email", "--url", rc.URL); code != 1 || !strings.Contains(out, "409") {
		t.Fatalf("duplicate create (exit %d):\n%s", code, out)
	}
	if out, code := h.ctlInvalid("webhooks", "create", "--org", "o2", "--sandbox", "s1", "--name", "n", "--channels", "fax", "--url", rc.URL); code != 1 || !strings.Contains(out, "channels.0") {
		t.Fatalf("bad create (exit %d):\n%s", code, out)
	}
	out, code = h.ctl("webhooks", "list", "-o", "json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("list (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("webhooks", "edit", "o1", "s1", "--name", "renamed"); code != 0 || !strings.Contains(out, "renamed") || !strings.Contains(out, "X-A=1") {
		t.Fatalf("edit (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("webhooks", "get", "o1", "s1"); code != 0 || !strings.Contains(out, rc.URL) {
		t.Fatalf("get (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("webhooks", "test", "o1", "s1"); code != 0 || !strings.Contains(out, "outcome success, HTTP status 200") {
		t.Fatalf("test (exit %d):\n%s", code, out)
	}
	if _, code := h.ctl("campaigns", "disable", "o1", "s1", "c1"); code != 1 {
		t.Fatal("disabling a campaign under [\"*\"] should fail")
	}
	h.ctl("webhooks", "edit", "o1", "s1", "--campaigns", "c1,c2")
	if out, code := h.ctl("campaigns", "disable", "o1", "s1", "c1"); code != 0 || !strings.Contains(out, "campaigns: c2") {
		t.Fatalf("campaign disable (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("campaigns", "enable", "o1", "s1", "c3"); code != 0 || !strings.Contains(out, "c2, c3") {
		t.Fatalf("campaign enable (exit %d):\n%s", code, out)
	}
	if out, _ := h.ctl("campaigns", "list", "o1", "s1"); out != "c2\nc3\n" {
		t.Fatalf("campaign list:\n%s", out)
	}
	h.ctl("webhooks", "edit", "o1", "s1", "--url", failing.URL)
	if out, code := h.ctl("webhooks", "test", "o1", "s1"); code != 1 || !strings.Contains(out, "http_500") {
		t.Fatalf("test of a failing endpoint (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("webhooks", "rotate-secret", "o1", "s1"); code != 0 || !strings.Contains(out, "whsec_") {
		t.Fatalf("rotate-secret (exit %d):\n%s", code, out)
	}

	file := filepath.Join(t.TempDir(), "events.jsonl")
	good := string(mustJSON(t, newEvent("v1", "o1", "s1", "email", "sent")))
	os.WriteFile(file, []byte(good+"\n{\"imsOrg\": 1}\n"+good+"\n"), 0o600)
	if out, code := h.ctl("validate", file); code != 1 || !strings.Contains(out, file+":2: schema") || !strings.Contains(out, "2 valid events, 1 invalid line") {
		t.Fatalf("validate (exit %d):\n%s", code, out)
	}
	if out, code := h.ctl("produce", file); code != 1 || !strings.Contains(out, "produced 2 events") {
		t.Fatalf("produce (exit %d):\n%s", code, out)
	}
	if _, code := h.ctl("produce", "--allow-invalid", file); code != 0 {
		t.Fatal("produce --allow-invalid failed")
	}
	h.eventually("the invalid line dead-lettered", 20*time.Second, func() bool {
		return h.metric("feedbackd_dlq_records_total", map[string]string{"reason": "invalid_event"}) == 1
	})
	if out, code := h.ctl("dlq", "stats"); code != 0 || !strings.Contains(out, "invalid_event") || !strings.Contains(out, "by age") {
		t.Fatalf("stats (exit %d):\n%s", code, out)
	}
	var one struct {
		DeadLetter string `json:"deadLetter"`
		WebhookID  string `json:"webhookId"`
	}
	out, _ = h.ctl("dlq", "list", "--reason", "invalid_event", "-o", "json")
	if json.Unmarshal([]byte(out), &one) != nil {
		t.Fatalf("list -o json:\n%s", out)
	}
	for _, arg := range []string{one.WebhookID, one.DeadLetter} {
		if out, code := h.ctl("dlq", "show", arg); code != 0 || !strings.Contains(out, "dlq-reason:") || !strings.Contains(out, `"imsOrg": 1`) {
			t.Fatalf("show %s (exit %d):\n%s", arg, code, out)
		}
	}
	if out, code := h.ctl("dlq", "list", "--since", "yesterday"); code != 1 || !strings.Contains(out, "--since") {
		t.Fatalf("bad filter (exit %d):\n%s", code, out)
	}
	if _, code := h.ctl("webhooks", "delete", "o1", "s1"); code != 0 {
		t.Fatal("delete failed")
	}
	if out, code := h.ctl("webhooks", "get", "o1", "s1"); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("get after delete (exit %d):\n%s", code, out)
	}
}
