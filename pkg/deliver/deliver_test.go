package deliver

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		status     int
		retryAfter string
		want       Verdict
		wantAfter  time.Duration
		outcome    string
	}{
		{200, "", Delivered, 0, "success"},
		{204, "", Delivered, 0, "success"},
		{301, "", Reject, 0, "rejected"},
		{302, "", Reject, 0, "rejected"},
		{400, "", Reject, 0, "rejected"},
		{401, "", Reject, 0, "rejected"},
		{404, "", Reject, 0, "rejected"},
		{408, "", Retry, 0, "retryable"},
		{410, "", Gone, 0, "rejected"},
		{425, "", Retry, 0, "retryable"},
		{429, "7", Retry, 7 * time.Second, "retryable"},
		{429, "-3", Retry, 0, "retryable"},
		{500, "", Retry, 0, "retryable"},
		{503, now.Add(90 * time.Second).Format(http.TimeFormat), Retry, 90 * time.Second, "retryable"},
		{503, "soon", Retry, 0, "retryable"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status)+tt.retryAfter, func(t *testing.T) {
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			r := judge(tt.status, h, now)
			if r.Verdict != tt.want || r.RetryAfter != tt.wantAfter || r.Label() != tt.outcome {
				t.Fatalf("judge(%d) = %+v outcome %s", tt.status, r, r.Label())
			}
		})
	}
}

func target(t *testing.T, url string, headers map[string]string) (*webhook.Target, string) {
	t.Helper()
	secret, err := signature.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := webhook.NewTarget(&webhook.Stored{Config: webhook.Config{URL: url, Headers: headers}, Secrets: []webhook.Secret{{Value: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	return tg, secret
}

func devClient() *Client {
	return New(Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/test"})
}

func TestSendSignsAndKeepsReservedHeaders(t *testing.T) {
	type got struct {
		h    http.Header
		body []byte
	}
	ch := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(b)
		ch <- got{r.Header.Clone(), b}
	}))
	defer srv.Close()
	tg, secret := target(t, srv.URL, map[string]string{"X-Tenant": "a", "webhook-id": "forged", "Content-Type": "text/plain"})
	body := []byte(`{"requestId":"r"}`)
	r := devClient().Send(context.Background(), tg, "msg_1", body)
	if r.Verdict != Delivered || r.Status != 200 {
		t.Fatalf("Send = %+v", r)
	}
	g := <-ch
	if g.h.Get("Webhook-Id") != "msg_1" || g.h.Get("Content-Type") != "application/json" || g.h.Get("X-Tenant") != "a" || g.h.Get("User-Agent") != "feedbackd/test" {
		t.Fatalf("headers: %v", g.h)
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	if err := wh.Verify(g.body, g.h); err != nil {
		t.Fatalf("receiver cannot verify: %v", err)
	}
}

func TestSendResults(t *testing.T) {
	redirect := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer redirect.Close()
	slow := httptest.NewServer(http.HandlerFunc(hang))
	defer slow.Close()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 1<<16))
		for i := 0; i < 1<<10; i++ { // 64 MiB if we read it all
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer big.Close()
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	defer reset.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()

	strict := New(Options{Timeout: 2 * time.Second, UserAgent: "t"})
	short := New(Options{Timeout: 200 * time.Millisecond, Guard: &netguard.Guard{AllowPrivate: true}})
	tests := []struct {
		name    string
		c       *Client
		url     string
		verdict Verdict
		class   string
	}{
		{"redirect not followed", devClient(), redirect.URL, Reject, "http_302"},
		{"timeout", short, slow.URL, Retry, "timeout"},
		{"huge body is cut, still delivered", devClient(), big.URL, Delivered, ""},
		{"reset", devClient(), reset.URL, Retry, "connection_reset"},
		{"refused", devClient(), refused, Retry, "connection_refused"},
		{"untrusted certificate", devClient(), tlsSrv.URL, Retry, "tls_certificate"},
		{"loopback blocked at dial time", strict, tlsSrv.URL, Unreachable, "address_blocked"},
		{"bad url", devClient(), "https://exa mple.com/", Unreachable, "invalid_url"},
		// Stored before validation refused them: not a retry either.
		{"port over 65535", devClient(), "http://127.0.0.1:65536/", Unreachable, "invalid_url"},
		{"port 99999999", devClient(), "http://127.0.0.1:99999999/", Unreachable, "invalid_url"},
		{"port 00", devClient(), "http://127.0.0.1:00/", Unreachable, "invalid_url"},
		{"space in the query", devClient(), "http://127.0.0.1:1/a?x=1 HTTP/1.0", Unreachable, "invalid_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, _ := target(t, tt.url, nil)
			r := tt.c.Send(context.Background(), tg, "id", []byte(`{}`))
			if r.Verdict != tt.verdict || r.Class != tt.class {
				t.Fatalf("Send = %+v, want verdict %d class %q", r, tt.verdict, tt.class)
			}
		})
	}
}

func TestSendTrustedTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := New(Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()})
	tg, _ := target(t, srv.URL, nil)
	if r := c.Send(context.Background(), tg, "id", []byte(`{}`)); r.Verdict != Delivered {
		t.Fatalf("HTTPS delivery with trusted CA: %+v", r)
	}
}

func TestSendAbortedByCaller(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(hang))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	tg, _ := target(t, srv.URL, nil)
	if r := devClient().Send(ctx, tg, "id", []byte(`{}`)); r.Verdict != Aborted {
		t.Fatalf("cancelled attempt = %+v, want Aborted", r)
	}
}

// hang answers only when the client goes away. net/http notices that only
// once the handler has read the request body.
func hang(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// With the default guard, every way of writing a forbidden address ends as
// Unreachable (dead-lettered as endpoint_invalid, never retried), without a
// connection being made: a loopback server listening on the port sees none.
func TestSSRFAtDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c := New(Options{Timeout: 2 * time.Second})
	for _, host := range []string{"127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "[64:ff9b::7f00:1]"} {
		tg, _ := target(t, "http://"+host+":"+port+"/", nil)
		r := c.Send(context.Background(), tg, "id", []byte(`{}`))
		if r.Verdict != Unreachable || r.Class != "address_blocked" {
			t.Errorf("%s: %+v", host, r)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback server got %d requests", n)
	}
}

// A redirect, even to a reachable address, is the endpoint's answer: it is
// not followed.
func TestRedirectIsNotFollowed(t *testing.T) {
	var hits atomic.Int32
	inner := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer inner.Close()
	outer := httptest.NewServer(http.RedirectHandler(inner.URL, http.StatusTemporaryRedirect))
	defer outer.Close()
	tg, _ := target(t, outer.URL, nil)
	if r := devClient().Send(context.Background(), tg, "id", []byte(`{}`)); r.Verdict != Reject || r.Status != 307 {
		t.Fatalf("redirect: %+v", r)
	}
	if hits.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

// A custom header value the transport cannot send (a config stored before
// validation refused it) makes the endpoint unusable, not a retry, and
// nothing reaches the endpoint.
func TestUnsendableHeaderIsNotRetried(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer srv.Close()
	for _, v := range []string{"a\vb", "del\x7f", "esc\x1b[2J", "nul\x00"} {
		tg, _ := target(t, srv.URL, map[string]string{"X-Custom": v})
		if r := devClient().Send(context.Background(), tg, "id", []byte(`{}`)); r.Verdict != Unreachable || r.Class != "invalid_header" {
			t.Errorf("header value %q: Send = %+v, want unreachable, invalid_header", v, r)
		}
		if webhook.ValidHeaderValue(v) {
			t.Errorf("config validation accepts %q, which the transport refuses", v)
		}
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the endpoint got %d requests", n)
	}
}

// The first ResponseBytes of an answer's body are kept, and whether there
// was more; with 0 nothing is kept; the connection is reused either way.
func TestSendKeepsTheStartOfTheAnswer(t *testing.T) {
	answer := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	tg, _ := target(t, srv.URL, nil)
	for _, c := range []struct {
		keep      int
		answer    string
		want      string
		truncated bool
	}{
		{8, "busy, try later", "busy, tr", true},
		{8, "busy", "busy", false},
		{8, "12345678", "12345678", false},
		{8, "", "", false},
		{0, "busy, try later", "", false},
		{1 << 20, strings.Repeat("x", 100<<10), strings.Repeat("x", 64<<10), true}, // MaxResponseBytes bounds what is read
	} {
		answer = c.answer
		cl := New(Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, ResponseBytes: c.keep})
		r := cl.Send(context.Background(), tg, "msg_1", []byte(`{}`))
		if r.Status != 503 || string(r.Response) != c.want || r.Truncated != c.truncated {
			t.Errorf("keep %d of %d bytes: status %d, %d bytes kept (%.10q), truncated %v; want %.10q, truncated %v",
				c.keep, len(c.answer), r.Status, len(r.Response), r.Response, r.Truncated, c.want, c.truncated)
		}
	}
}

// A connection re-opened to an HTTPS endpoint resumes its TLS session.
func TestTLSSessionResumed(t *testing.T) {
	var resumed []bool
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Connection", "close") // the next attempt opens a new connection
	}))
	defer srv.Close()
	c := New(Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()})
	tg, _ := target(t, srv.URL, nil)
	for range 3 {
		if r := c.Send(context.Background(), tg, "id", []byte(`{}`)); r.Verdict != Delivered {
			t.Fatalf("HTTPS delivery: %+v", r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(resumed, []bool{false, true, true}) {
		t.Fatalf("sessions resumed: %v, want a full handshake then resumptions", resumed)
	}
}
