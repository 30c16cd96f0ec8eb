package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// chromiumPath finds Debian's chromium; its absence fails the test (make
// deps installs it), it never skips.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run make deps (it installs Debian's chromium)")
	return ""
}

// browser is one headless chromium for a test; tab opens a tab, after the
// first in a browser context of its own (its own cookies). Every request
// any tab makes is recorded.
type browser struct {
	t        *testing.T
	alloc    context.Context
	first    context.Context // the first tab's: later tabs share its browser
	mu       sync.Mutex
	requests []string
	shots    string // CONSOLE_SCREENSHOTS: where screenshots go ("" none)
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return &browser{t: t, alloc: alloc, shots: os.Getenv("CONSOLE_SCREENSHOTS")}
}

// tab is one browser tab.
type tab struct {
	b   *browser
	ctx context.Context
}

func (b *browser) tab() *tab {
	b.t.Helper()
	var ctx context.Context
	var cancel context.CancelFunc
	if b.first == nil {
		ctx, cancel = chromedp.NewContext(b.alloc)
	} else {
		ctx, cancel = chromedp.NewContext(b.first, chromedp.WithNewBrowserContext())
	}
	b.t.Cleanup(cancel)
	err := chromedp.Listen(ctx, func(ev any) { // starts the browser with the first tab
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.URL)
			b.mu.Unlock()
		}
	})
	if err != nil {
		b.t.Fatalf("chromium did not start: %v", err)
	}
	if b.first == nil {
		b.first = ctx
	}
	return &tab{b: b, ctx: ctx}
}

// step bounds one browser step, so that a missing element fails the test
// instead of hanging it.
func (tb *tab) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tb.ctx, 20*time.Second)
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.b.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.b.t.Fatalf("browser: %v (at %s)", err, tb.location())
	}
}

// get runs one action that returns a value.
func get[T any](tb *tab, a chromedp.Action[T]) T {
	tb.b.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.b.t.Fatalf("browser: %v (at %s)", err, tb.location())
	}
	return v
}

func (tb *tab) location() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (tb *tab) open(u, sel string) {
	tb.b.t.Helper()
	tb.do(chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(sel)))
}

func (tb *tab) text(sel string) string {
	tb.b.t.Helper()
	return strings.TrimSpace(get(tb, chromedp.Text(chromedp.CSS(sel))))
}

func (tb *tab) value(sel string) string {
	tb.b.t.Helper()
	return get(tb, chromedp.Value(chromedp.CSS(sel)))
}

func (tb *tab) set(sel, v string) {
	tb.b.t.Helper()
	tb.do(chromedp.SetValue(chromedp.CSS(sel), v))
}

func (tb *tab) html() string {
	tb.b.t.Helper()
	return get(tb, chromedp.OuterHTML(chromedp.CSS("html")))
}

// submit clicks sel and waits until the page it leads to has loaded: the
// page before it is marked, and the mark is gone on the new one.
func (tb *tab) submit(sel string) {
	tb.b.t.Helper()
	get(tb, chromedp.Evaluate[bool](`window.__before = true`))
	tb.do(chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!window.__before && document.readyState === "complete"`))
		cancel()
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			tb.b.t.Fatalf("clicking %s led to no new page (at %s)", sel, tb.location())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// shot saves a full-page PNG named name when CONSOLE_SCREENSHOTS is set
// (make screenshots).
func (tb *tab) shot(name string) {
	tb.b.t.Helper()
	if tb.b.shots == "" {
		return
	}
	png := get(tb, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(tb.b.shots, name+".png"), png, 0o644); err != nil {
		tb.b.t.Fatal(err)
	}
}

// labelled fails the test if an input, select or textarea of the page has
// no <label>.
func (tb *tab) labelled() {
	tb.b.t.Helper()
	missing := get(tb, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
		.filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id)`))
	if len(missing) > 0 {
		tb.b.t.Errorf("inputs without a label at %s: %v", tb.location(), missing)
	}
}

// fits375 fails the test if the page needs horizontal scrolling at 375 CSS
// pixels (wide tables scroll inside their own box).
func (tb *tab) fits375(page string) {
	tb.b.t.Helper()
	tb.do(chromedp.EmulateViewport(375, 800), chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("body > main")))
	w := get(tb, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	tb.shot(page + "-375px")
	tb.do(chromedp.EmulateViewport(1200, 900), chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("body > main")))
	if w > 375 {
		tb.b.t.Errorf("%s is %d px wide at a 375 px viewport", page, w)
	}
}

// requestID is a delivery's requestId.
func requestID(d delivery) string {
	var e struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(d.body, &e)
	return e.RequestID
}

func (rc *receiver) gotRequest(id string) (delivery, bool) {
	for _, d := range rc.deliveries() {
		if requestID(d) == id {
			return d, true
		}
	}
	return delivery{}, false
}

// The console, driven in a real headless chromium against a running
// feedbackd (kfake, redis-server, verifying receivers): sign-in, create
// with a field error, delivery, edit, campaigns, test send, rotation,
// dead-letter replay, recovery, tenant scoping, cross-site refusal, 375 px
// layouts, and no request leaving loopback.
func TestConsoleInBrowser(t *testing.T) {
	b := newBrowser(t)
	h := start(t, func(c *daemon.Config) {
		c.HTTP.UIPlainHTTP = true // the test's listener is plain HTTP
		withAdminJWT(c)
	})
	first := newReceiver(t, nil)
	second := newReceiver(t, func(n int, d delivery) int {
		if requestID(d) == "req-dead" && n == 1 {
			return http.StatusBadRequest // dead-lettered as rejected, then replayed
		}
		return http.StatusOK
	})
	ui := h.direct + "/ui/"
	tb := b.tab()

	// Sign-in: a bad token, then the admin token, typed and sent with Enter.
	tb.open(ui, "#token")
	tb.shot("1-signin")
	tb.labelled()
	tb.do(chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token\r"), chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if m := tb.text("#signin-error"); !strings.Contains(m, "not valid") {
		t.Fatalf("a bad token: %q", m)
	}
	tb.do(chromedp.SendKeys(chromedp.CSS("#token"), token+"\r"), chromedp.WaitVisible(chromedp.CSS("#create")))
	if strings.Contains(tb.html(), token) {
		t.Fatal("the token is in the page")
	}

	// Create: a URL the API refuses shows its error next to the field;
	// fixed, the secret is shown once.
	tb.submit("#create")
	tb.set("#imsOrg", "orgA")
	tb.set("#sandboxId", "sb1")
	tb.set("#sandboxName", "prod")
	tb.set("#name", "Orders feedback")
	tb.set("#url", "ftp://example.com/hook")
	tb.set("#hn0", "X-Team")
	tb.set("#hv0", "orders")
	tb.do(chromedp.Click(chromedp.CSS("#add-header")))
	if n := get(tb, chromedp.Evaluate[int](`document.querySelectorAll(".header-row").length`)); n != 2 {
		t.Fatalf("Add header: %d rows", n)
	}
	tb.do(chromedp.Click(chromedp.CSS(".header-row:last-child .remove-header")))
	if n := get(tb, chromedp.Evaluate[int](`document.querySelectorAll(".header-row").length`)); n != 1 {
		t.Fatalf("Remove header: %d rows", n)
	}
	tb.shot("3-create")
	tb.labelled()
	tb.submit("#submit")
	if e := get(tb, chromedp.Evaluate[string](`(document.querySelector("#url").nextElementSibling || {}).textContent || ""`)); !strings.Contains(e, "https://") {
		t.Fatalf("the URL's error is not next to it: %q", e)
	}
	tb.shot("3-create-field-error")
	tb.set("#url", first.URL+"/hook")
	tb.submit("#submit")
	secret := tb.value("#signing-secret")
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("no secret after create: %q", secret)
	}
	tb.shot("3-secret-once")
	tb.do(chromedp.Click(chromedp.CSS(`button[data-copy="signing-secret"]`)))
	h.eventually("the copy button", 5*time.Second, func() bool { return tb.text(`button[data-copy="signing-secret"]`) == "Copied" })

	// The created webhook receives a produced event, signed with that secret.
	h.produceEvent(newEvent("c1", "orgA", "sb1", "email", "sent"))
	h.eventually("the first delivery", 20*time.Second, func() bool { _, ok := first.gotRequest("req-c1"); return ok })
	d, _ := first.gotRequest("req-c1")
	verify(t, secret, d)
	if d.header.Get("X-Team") != "orders" {
		t.Errorf("the form's header did not arrive: %v", d.header)
	}

	// The delivery log lists the delivery; its message shows the attempt
	// and the outcome; the health summary; a bad filter named.
	h.eventually("the delivery in the console's delivery log", 20*time.Second, func() bool {
		tb.open(ui+"webhooks/orgA/sb1/log", "main")
		return strings.Contains(get(tb, chromedp.OuterHTML(chromedp.CSS("main"))), "req-c1")
	})
	if r := tb.text("#rate-day"); !strings.HasPrefix(r, "100.0%") {
		t.Errorf("health: %q", r)
	}
	tb.shot("5-delivery-log")
	tb.open(ui+"webhooks/orgA/sb1/log?limit=1", "#attempts")
	newest := tb.text("#attempts tbody")
	tb.submit("#next-page")
	if older := tb.text("#attempts tbody"); strings.Contains(older, newest) || !strings.Contains(older, "req-c1") {
		t.Fatalf("paging: %q then %q", newest, older)
	}
	tb.open(ui+"webhooks/orgA/sb1/log", "#attempts")
	tb.submit("#attempts a")
	if tl := tb.text("#timeline"); !strings.Contains(tl, "attempt") || !strings.Contains(tl, "HTTP 200") {
		t.Fatalf("the message's timeline: %q", tl)
	}
	if f := tb.text("#final"); !strings.Contains(f, "delivered") {
		t.Fatalf("the final outcome: %q", f)
	}
	tb.shot("5-message")
	tb.open(ui+"webhooks/orgA/sb1/log?httpStatus=abc", "#log-filters")
	if e := get(tb, chromedp.Evaluate[string](`(document.querySelector("#l-http").nextElementSibling || {}).textContent || ""`)); !strings.Contains(e, "HTTP status") {
		t.Errorf("a bad filter's error next to it: %q", e)
	}

	// The inventory lists it, filters and fits 375 px; the secret is never
	// shown again.
	tb.open(ui+"webhooks", "#inventory")
	if inv := tb.text("#inventory"); !strings.Contains(inv, "Orders feedback") || !strings.Contains(inv, "sb1") ||
		!strings.Contains(inv, strings.TrimPrefix(first.URL, "http://")) || !strings.Contains(inv, "100.0%") {
		t.Fatalf("inventory: %q", inv)
	}
	tb.shot("2-inventory")
	tb.fits375("2-inventory")
	tb.labelled()
	tb.open(ui+"webhooks?q=nothing-matches", "#empty")
	tb.open(ui+"webhooks?q=orders&sort=host", "#inventory")
	tb.submit(`a[aria-label="Edit Orders feedback"]`) // Edit from the inventory
	if strings.Contains(tb.html(), secret) {
		t.Fatal("the signing secret is shown again on the edit page")
	}
	tb.shot("3-edit")
	tb.labelled()
	tb.fits375("3-edit")

	// Edit the URL: the next event goes to the new one.
	tb.set("#url", second.URL+"/hook")
	tb.submit("#submit")
	tb.do(chromedp.WaitVisible(chromedp.CSS("#saved")))
	n := 0
	h.eventually("an event at the new URL", 20*time.Second, func() bool {
		n++
		h.produceEvent(newEvent(fmt.Sprintf("e%d", n), "orgA", "sb1", "email", "delivered"))
		time.Sleep(300 * time.Millisecond)
		return second.count() > 0
	})
	before := first.count()
	h.produceEvent(newEvent("after-edit", "orgA", "sb1", "email", "delivered"))
	h.eventually("the next event at the new URL", 20*time.Second, func() bool { _, ok := second.gotRequest("req-after-edit"); return ok })
	if first.count() != before {
		t.Errorf("the old URL still got events after the edit")
	}

	// Campaigns: a list, one disabled and enabled again.
	tb.do(chromedp.Click(chromedp.CSS("#campaigns-list")))
	tb.set("#campaigns", "camp-1\ncamp-2")
	tb.submit("#submit")
	tb.do(chromedp.WaitVisible(chromedp.CSS("#campaign-list")))
	tb.submit(`button[data-campaign="camp-1"]`)
	if l := tb.text("#campaign-list"); strings.Contains(l, "camp-1") || !strings.Contains(l, "camp-2") {
		t.Fatalf("after disabling camp-1: %q", l)
	}
	var cfg struct {
		Campaigns []string `json:"campaigns"`
	}
	h.call("GET", "/v1/webhooks/orgA/sb1", nil, &cfg)
	if !slices.Equal(cfg.Campaigns, []string{"camp-2"}) {
		t.Fatalf("campaigns through the API: %v", cfg.Campaigns)
	}
	tb.set("#enable-campaign", "camp-1")
	tb.submit("#enable-campaign-button")
	if l := tb.text("#campaign-list"); !strings.Contains(l, "camp-1") {
		t.Fatalf("after enabling camp-1: %q", l)
	}
	// A campaign id of "." or "..", to disable (a DELETE) or enable (a
	// PUT), is refused by name and never reaches the config itself.
	for _, tc := range []struct{ id, button string }{
		{"..", `button[data-campaign="camp-2"]`}, {".", `button[data-campaign="camp-2"]`},
		{"..", "#enable-campaign-button"}, {".", "#enable-campaign-button"},
	} {
		get(tb, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).form.campaignId.value = %q`, tc.button, tc.id)))
		tb.submit(tc.button)
		if e := tb.text("#action-error"); !strings.Contains(e, "campaignId") {
			t.Errorf("campaign id %q at %s: %q", tc.id, tc.button, e)
		}
		cfg.Campaigns = nil
		if code := h.call("GET", "/v1/webhooks/orgA/sb1", nil, &cfg); code != http.StatusOK || !slices.Equal(cfg.Campaigns, []string{"camp-2", "camp-1"}) {
			t.Fatalf("after campaign id %q at %s: %d %v", tc.id, tc.button, code, cfg.Campaigns)
		}
	}

	// Send test event: the attempt's outcome, status, duration and class.
	tb.submit("#send-test")
	if o, s := tb.text("#test-outcome"), tb.text("#test-status"); o != "success" || s != "200" {
		t.Fatalf("test send: outcome %q status %q", o, s)
	}
	tb.shot("4-test-send")

	// Rotate: the new secret once; the receiver verifies with it.
	tb.submit("#rotate-secret")
	rotated := tb.value("#signing-secret")
	if !strings.HasPrefix(rotated, "whsec_") || rotated == secret {
		t.Fatalf("rotation showed %q", rotated)
	}
	tb.open(ui+"webhooks/orgA/sb1", "#config")
	if strings.Contains(tb.html(), rotated) {
		t.Fatal("the rotated secret is shown again")
	}
	h.produceEvent(newEvent("rot", "orgA", "sb1", "email", "sent"))
	h.eventually("a delivery after rotation", 20*time.Second, func() bool { _, ok := second.gotRequest("req-rot"); return ok })
	d, _ = second.gotRequest("req-rot")
	verify(t, rotated, d)

	// A dead letter, seen in the list and in full, replayed to done.
	h.produceEvent(newEvent("dead", "orgA", "sb1", "email", "bounce"))
	h.dlq(1)
	tb.open(ui+"dlq?reason=rejected", "#dlq-list")
	if l := tb.text("#dlq-list"); !strings.Contains(l, "orgA / sb1") {
		t.Fatalf("dead letters: %q", l)
	}
	tb.shot("6-dead-letters")
	tb.labelled()
	tb.submit("#dlq-list a")
	deadLetterPage := tb.location()
	if e := tb.text("#event"); !strings.Contains(e, "req-dead") {
		t.Fatalf("the dead letter in full: %q", e)
	}
	tb.shot("6-dead-letter")
	tb.open(ui+"dlq?reason=rejected&org=orgA", "#replay") // org A's replay
	tb.do(chromedp.Click(chromedp.CSS("#replay-dry")))    // a live replay
	tb.submit("#replay-button")
	replayPage := tb.location()
	h.eventually("the replay done on the page", 30*time.Second, func() bool { return tb.text("#job-state") == "done" })
	if r := tb.text("#job-replayed"); r != "1" {
		t.Fatalf("replayed %q", r)
	}
	tb.shot("6-replay")
	h.eventually("the replayed delivery", 20*time.Second, func() bool { return len(matching(second, "req-dead")) == 2 })

	// Recovery of a window: a bad since named next to its field, then a
	// dry run to done.
	tb.open(ui+"webhooks/orgA/sb1", "#recover")
	tb.set("#rec-since", "bogus")
	tb.submit("#recover-button")
	if e := get(tb, chromedp.Evaluate[string](`(document.querySelector("#rec-since").nextElementSibling || {}).textContent || ""`)); e == "" {
		t.Fatal("a bad since shows no error next to it")
	}
	tb.set("#rec-since", "1h")
	tb.set("#rec-until", "0s")
	tb.submit("#recover-button")
	recoveryPage := tb.location()
	h.eventually("the recovery done", 30*time.Second, func() bool { return tb.text("#job-state") == "done" })
	tb.shot("6-recovery")

	// A cross-site form POST (another origin on the same site, so the
	// SameSite cookie goes along) is refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s">
<input name="csrf" value="guess"></form><script>document.getElementById("f").submit()</script>`,
			ui+"webhooks/orgA/sb1/delete")
	}))
	t.Cleanup(evil.Close)
	tb.open(evil.URL, "#message")
	if m := tb.text("#message"); !strings.Contains(m, "another site") {
		t.Fatalf("a cross-site POST: %q", m)
	}
	if code := h.call("GET", "/v1/webhooks/orgA/sb1", nil, nil); code != http.StatusOK {
		t.Fatalf("the config after a cross-site POST: %d", code)
	}

	// An org:orgB session sees nothing of org A, direct URLs included.
	h.createWebhook(webhookConfig("orgB", "sbB", second.URL+"/b"))
	other := b.tab()
	other.open(ui+"signin", "#token")
	other.do(chromedp.SendKeys(chromedp.CSS("#token"), adminJWT(t, "org:orgB", time.Hour, adminJWTSecret)+"\r"),
		chromedp.WaitVisible(chromedp.CSS("#inventory")))
	if inv := other.text("#inventory"); strings.Contains(inv, "orgA") || !strings.Contains(inv, "sbB") {
		t.Fatalf("org:orgB's inventory: %q", inv)
	}
	// A's real ids: each page exists for the admin and is not found for B.
	webhookID := d.header.Get("webhook-id")
	recoveryID := path.Base(recoveryPage)
	replayID := path.Base(replayPage)
	pages := []string{"webhooks/orgA/sb1", "webhooks/orgA/sb1/delete", "webhooks/orgA/sb1/recoveries/" + recoveryID,
		"webhooks/orgA/sb1/log", "webhooks/orgA/sb1/messages/" + webhookID,
		strings.TrimPrefix(deadLetterPage, ui), "replays/" + replayID}
	for _, p := range pages {
		tb.open(ui+p, "main")
		if m := tb.text("h1"); m == "Not found" {
			t.Fatalf("the admin at /ui/%s: %q", p, m)
		}
		other.open(ui+p, "#message")
		if m := other.text("h1"); m != "Not found" {
			t.Errorf("org:orgB at /ui/%s: %q", p, m)
		}
	}
	for _, p := range []string{"progress/replays/" + replayID, "progress/recoveries/orgA/sb1/" + recoveryID} {
		tb.open(ui+p, "body")
		if b := tb.text("body"); !strings.Contains(b, `"state"`) {
			t.Fatalf("the admin at /ui/%s: %q", p, b)
		}
		other.open(ui+p, "body")
		if b := other.text("body"); b != "Not Found" {
			t.Errorf("org:orgB at /ui/%s: %q", p, b)
		}
	}
	other.open(ui+"dlq", "#dlq-total")
	if strings.Contains(other.text("main"), "orgA") {
		t.Errorf("org:orgB sees org A's dead letters")
	}
	other.open(ui+"dlq?org=orgA", "main")
	if m := other.text("main"); !strings.Contains(m, "may not read") {
		t.Errorf("org:orgB asking for org A's dead letters: %q", m)
	}

	// Delete with confirmation, then sign out.
	tb.open(ui+"webhooks/orgA/sb1", "#delete")
	tb.submit("#delete")
	tb.submit("#confirm-delete")
	if code := h.call("GET", "/v1/webhooks/orgA/sb1", nil, nil); code != http.StatusNotFound {
		t.Fatalf("after delete: %d", code)
	}
	tb.submit(".signout button")
	tb.open(ui+"webhooks", "#token")

	// Nothing the pages asked for left loopback.
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, raw := range b.requests {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "data" && u.Scheme != "about" && u.Hostname() != "127.0.0.1") {
			t.Errorf("a page requested %s", raw)
		}
	}
	if len(b.requests) < 20 {
		t.Errorf("only %d requests recorded: is the network listener working?", len(b.requests))
	}
}

// matching are the deliveries of the receiver with this requestId.
func matching(rc *receiver, id string) []delivery {
	var out []delivery
	for _, d := range rc.deliveries() {
		if requestID(d) == id {
			out = append(out, d)
		}
	}
	return out
}

// The inventory's Redis cost: one view of 40 configs with deliveries reads
// their success rates in one light read of the day counts (one pipeline),
// not a health report per config (its store entry, breaker, last success
// and an XREVRANGE of its log each). Logged: the commands of one view by
// name, with Redis's own time (usec) for them.
func TestConsoleInventoryRedisCommands(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.HTTP.UIPlainHTTP = true })
	rc := newReceiver(t, nil)
	const configs = 40
	for i := range configs {
		h.createWebhook(webhookConfig(fmt.Sprintf("org%02d", i), "sb", rc.URL+"/hook"))
	}
	for i := range configs {
		for j := range 3 {
			h.produceEvent(newEvent(fmt.Sprintf("i%d-%d", i, j), fmt.Sprintf("org%02d", i), "sb", "email", "sent"))
		}
	}
	h.eventually("every delivery", 60*time.Second, func() bool { return rc.count() >= 3*configs })
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.PostForm(h.direct+"/ui/signin", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	view := func() string {
		resp, err := client.Get(h.direct + "/ui/webhooks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("inventory: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	h.eventually("every config's rate in the inventory", 20*time.Second, func() bool {
		return strings.Count(view(), "100.0%") == configs
	})
	// The API's answer the inventory reads, held against the OpenAPI document.
	var list struct {
		Webhooks     []struct{ ImsOrg string }
		SuccessRates []struct {
			ImsOrg  string   `json:"imsOrg"`
			LastDay *float64 `json:"lastDay"`
		} `json:"successRates"`
	}
	if code := h.call("GET", "/v1/webhooks?include=successRate", nil, &list); code != http.StatusOK || len(list.SuccessRates) != configs {
		t.Fatalf("include=successRate: %d %+v", code, list)
	}
	for i, r := range list.SuccessRates {
		if r.ImsOrg != list.Webhooks[i].ImsOrg || r.LastDay == nil || *r.LastDay != 1 {
			t.Errorf("success rate %d: %+v of %s", i, r, list.Webhooks[i].ImsOrg)
		}
	}
	var bad struct {
		Error struct{ Field string } `json:"error"`
	}
	if code := h.callInvalid("GET", "/v1/webhooks?include=health", nil, &bad); code != http.StatusBadRequest || bad.Error.Field != "include" {
		t.Errorf("include=health: %d %+v", code, bad)
	}
	before := commandStats(t, h.redis.Client)
	view()
	after := commandStats(t, h.redis.Client)
	var total, usec int64
	var by []string
	for name, n := range after {
		if d := n.calls - before[name].calls; d > 0 {
			total, usec = total+d, usec+n.usec-before[name].usec
			by = append(by, fmt.Sprintf("%s=%d", name, d))
		}
	}
	slices.Sort(by)
	t.Logf("one inventory view of %d configs: %d Redis commands, %d usec in Redis (the daemon's own meanwhile included): %s",
		configs, total, usec, strings.Join(by, " "))
	if d := after["xrevrange"].calls - before["xrevrange"].calls; d > 0 {
		t.Errorf("%d XREVRANGEs (a log stream read) for one view of %d configs: a health report per row", d, configs)
	}
}

type commandStat struct{ calls, usec int64 }

// commandStats are the calls of each command the server has served
// (INFO commandstats).
func commandStats(t *testing.T, rdb *redis.Client) map[string]commandStat {
	t.Helper()
	info, err := rdb.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]commandStat{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !strings.HasPrefix(name, "cmdstat_") || !ok {
			continue
		}
		var st commandStat
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}
