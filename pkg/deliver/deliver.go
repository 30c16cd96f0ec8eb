// Package deliver sends one signed webhook attempt and judges its result.
//
// The status rules live in judge and classify, and nowhere else:
// 2xx is delivered; 408, 425, 429, 5xx, timeouts and network errors are
// retried (honouring Retry-After); 410 is rejected and disables the config;
// 3xx (never followed) and other 4xx are rejected; a URL that is invalid or
// resolves to a forbidden address is unreachable and never retried.
//
// Hostile endpoints are bounded. An attempt ends within Options.Timeout
// whatever the endpoint does (trickling its answer, never finishing a TLS
// handshake, sending an endless body); at most 64 KiB of response headers
// and MaxResponseBytes of body are read, and a longer or broken body closes
// the connection; connecting and the TLS handshake end with the attempt
// too. Requests are HTTP/1.1 (see transport) over kept-alive connections,
// written on the caller's goroutine; Send waits for the answer there, Start
// on a small goroutine of its own. Once a status line and
// headers have arrived, the status alone decides: what then happens to the
// body (cut, reset, bad chunking, a trickle ended by the deadline) does not
// change the verdict, because the endpoint has answered. An attempt without
// a valid answer gets one of the classes listed with classTimeout and is
// retried, unless the address is forbidden or the URL invalid.
//
// With Options.Proxy, every request goes through that HTTP proxy (CONNECT
// for https, absolute form for http); the endpoint's host is judged by the
// Guard first, the proxy's own address is not, and a proxy that does not
// carry the attempt gives a proxy_* class, retried.
package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Verdict is what an attempt means for the event.
type Verdict int

const (
	Delivered   Verdict = iota // 2xx
	Retry                      // try again later
	Reject                     // the endpoint refused it: dead-letter
	Gone                       // 410: dead-letter and disable the config
	Unreachable                // invalid URL or forbidden address: dead-letter
	Aborted                    // our own context ended (shutdown): not an attempt
)

// Result.Class of an attempt that got no HTTP response is one of these; one
// that got a response has "http_<status>" (or "" when delivered). This is
// the whole vocabulary: it never holds a URL, an address or a secret.
const (
	classTimeout        = "timeout"            // the attempt's deadline passed: connect, TLS, headers or a trickle
	classDNS            = "dns"                // the host name did not resolve
	classTLSCertificate = "tls_certificate"    // the certificate is untrusted, expired or for another name
	classTLSHandshake   = "tls_handshake"      // no TLS on the other side, or it sent a TLS alert
	classRefused        = "connection_refused" // nothing listens on the port
	classReset          = "connection_reset"   // the endpoint reset the connection before answering
	classClosed         = "connection_closed"  // the endpoint closed the connection before answering
	classBadResponse    = "bad_response"       // the endpoint sent bytes that are not an HTTP response head
	classNetwork        = "network"            // any other failure to exchange the request
	classBlocked        = "address_blocked"    // the address is forbidden (Unreachable)
	classInvalidURL     = "invalid_url"        // the URL cannot be requested (Unreachable)
	classInvalidHeader  = "invalid_header"     // a header value cannot be sent (Unreachable)
	classAuthConfig     = "auth_config"        // the JWT cannot be made (Unreachable)
	classOAuth2Token    = "oauth2_token"       // no access token could be fetched
	classCanceled       = "canceled"           // our own context ended (Aborted)

	// Through delivery.proxy (all retried): no connection to the proxy or
	// no valid answer to CONNECT; a 407 (to CONNECT, or to a plain-http
	// request); any other refusal of CONNECT is "proxy_<status>"
	// (proxy_403, proxy_502, ...).
	classProxyUnreachable = "proxy_unreachable"
	classProxyAuth        = "proxy_auth"
)

// Result describes one attempt. Class is a short classified error from the
// fixed vocabulary above ("http_503", "timeout", "connection_refused", ...),
// safe for logs and dead-letter headers: it never holds a URL or a secret.
type Result struct {
	Verdict    Verdict
	Status     int // HTTP status, 0 when there was no response
	Class      string
	RetryAfter time.Duration
	Duration   time.Duration
	// Response holds the first Options.ResponseBytes bytes of the answer's
	// body; Truncated says the body was longer.
	Response  []byte
	Truncated bool
}

// Label is the metric label of the attempt: success, retryable, rejected
// (an HTTP status that is not retried) or error (no HTTP response).
func (r Result) Label() string {
	switch {
	case r.Verdict == Delivered:
		return "success"
	case r.Status == 0:
		return "error"
	case r.Verdict == Retry:
		return "retryable"
	default:
		return "rejected"
	}
}

// Options configure a Client.
type Options struct {
	Timeout             time.Duration   // one attempt, connection included
	MaxResponseBytes    int64           // response body read before closing
	ResponseBytes       int             // response body kept in Result.Response; 0: none
	Guard               *netguard.Guard // which addresses may be dialed; nil: public ones only
	UserAgent           string
	TLSConfig           *tls.Config // nil: system roots
	MaxIdleConnsPerHost int         // 0: 64
	// MaxIdleConns bounds the idle connections kept over all endpoints
	// (0: 4,096, or MaxIdleConnsPerHost if more). Below the attempts in
	// flight, a burst of answers closes the connections beyond it, and
	// the next burst dials them again.
	MaxIdleConns int
	// MaxConns bounds the connections open at once over all endpoints, in
	// use and idle (0: no bound): set below the open-file limit, it keeps
	// idle connections without running out of descriptors. A dial at the
	// bound first closes the idle connection least recently used (of a
	// sample of endpoints); with none idle, it dials beyond it, and closes
	// that connection once answered.
	MaxConns   int
	Registerer prometheus.Registerer // nil: metrics are not exported
	// Proxy, if set (see ParseProxy), carries every delivery and OAuth2
	// token request: CONNECT for https, absolute-form requests for http.
	// The Guard still judges the endpoint's host before anything is sent;
	// the proxy's own address is exempt from it.
	Proxy *url.URL
}

// Client sends attempts. It is safe for concurrent use and keeps
// connections alive per endpoint.
type Client struct {
	quick  time.Duration // quickAnswer but in tests
	tr     *transport
	http   *http.Client // OAuth2 token requests
	opts   Options
	tokens *endpointauth.TokenCache
}

// New builds a Client. Proxies from the environment (HTTPS_PROXY, ...) are
// ignored on purpose: only Options.Proxy is used, with the address check
// made on the endpoint's host before the proxy is asked.
func New(opts Options) *Client {
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 10
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 64
	}
	if opts.MaxIdleConns <= 0 {
		opts.MaxIdleConns = max(4096, opts.MaxIdleConnsPerHost)
	}
	if opts.Guard == nil {
		opts.Guard = &netguard.Guard{}
	}
	// Token requests are rare: net/http's transport, with the same address
	// check, the same bounds on setting up a connection (it finishes a
	// dial after the request that started it has ended, to pool it) and
	// the attempt's deadline from the context.
	setup := min(opts.Timeout, 10*time.Second)
	guard := opts.Guard
	dial, proxyFunc := guard.DialContext, (func(*http.Request) (*url.URL, error))(nil)
	var px *proxy
	if opts.Proxy != nil {
		// Every connection net/http makes then goes to the proxy, whose
		// address is exempt; the token URL's host is judged here first.
		px = newProxy(opts.Proxy)
		dial = px.dial
		proxyFunc = func(r *http.Request) (*url.URL, error) {
			ctx, cancel := context.WithTimeout(r.Context(), setup)
			defer cancel()
			if err := guard.CheckTarget(ctx, r.URL.Hostname()); err != nil {
				return nil, err
			}
			return opts.Proxy, nil
		}
	}
	hc := &http.Client{
		Transport: &http.Transport{
			Proxy: proxyFunc,
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				ctx, cancel := context.WithTimeout(ctx, setup)
				defer cancel()
				return dial(ctx, network, address)
			},
			ForceAttemptHTTP2:      true,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    setup,
			MaxResponseHeaderBytes: 64 << 10,
			TLSClientConfig:        opts.TLSConfig,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	fetches := promauto.With(opts.Registerer).NewCounterVec(prometheus.CounterOpts{
		Name: "feedbackd_oauth2_token_requests_total",
		Help: "Access-token requests to tenants' OAuth2 token endpoints, by result (ok, error).",
	}, []string{"result"})
	tr := newTransport(guard.DialContext, opts.TLSConfig, opts.MaxIdleConnsPerHost, opts.MaxIdleConns, opts.MaxConns)
	if px != nil {
		tr.proxy, tr.check = px, guard.CheckTarget
	}
	registerConnMetrics(opts.Registerer, tr)
	return &Client{
		quick:  quickAnswer,
		tr:     tr,
		http:   hc,
		opts:   opts,
		tokens: endpointauth.NewTokenCache(hc, fetches),
	}
}

// connCollector exports tr's connections from one reading per scrape, as
// the Redis pool's metrics are (daemon's poolStats): the hot path only
// counts under the lock it takes anyway.
type connCollector struct {
	tr                    *transport
	conns, dials, evicted *prometheus.Desc
}

func registerConnMetrics(reg prometheus.Registerer, tr *transport) {
	reg.MustRegister(&connCollector{
		tr: tr,
		conns: prometheus.NewDesc("feedbackd_delivery_connections",
			"Connections to endpoints open now: in_use (carrying an attempt, or being dialled) or idle (kept for the next attempt to the same endpoint).",
			[]string{"state"}, nil),
		dials: prometheus.NewDesc("feedbackd_delivery_dials_total",
			"Connections dialled to endpoints (and proxies), failed dials included.", nil, nil),
		evicted: prometheus.NewDesc("feedbackd_delivery_connections_evicted_total",
			"Connections closed to stay within the open-file limit's share for deliveries: idle ones closed to make room for a dial, and ones dialled past it closed once answered.", nil, nil),
	})
}

func (m *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.conns
	ch <- m.dials
	ch <- m.evicted
}

func (m *connCollector) Collect(ch chan<- prometheus.Metric) {
	inUse, idle, n := m.tr.connStats()
	ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(inUse), "in_use")
	ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(idle), "idle")
	ch <- prometheus.MustNewConstMetric(m.dials, prometheus.CounterValue, float64(n.dials))
	ch <- prometheus.MustNewConstMetric(m.evicted, prometheus.CounterValue, float64(n.evicted))
}

// Close closes idle connections. Attempts in flight finish; their
// connections are closed when they do.
func (c *Client) Close() {
	c.tr.close()
	c.http.CloseIdleConnections()
}

// Send makes one attempt: it signs body for webhook id with the target's
// secrets at the current time, authenticates as the target's auth says,
// POSTs it, and judges the answer. ctx bounds the attempt together with
// Options.Timeout. An OAuth2 access token the endpoint refuses (401) is
// replaced once, within the attempt.
func (c *Client) Send(ctx context.Context, t *webhook.Target, id string, body []byte) Result {
	a := c.begin(ctx, t, id, body)
	for {
		a.x.wait()
		if r, again := a.judged(); !again {
			return a.result(r)
		}
	}
}

// Start makes the attempt Send makes, but waits for a slow answer on a
// goroutine of its own: it renders, signs, connects and writes the request
// on the calling goroutine and waits there for at most quickAnswer. done is
// called once with the Result: before Start returns if the answer came by
// then or the attempt ended first (a refused address, a failed
// connection); otherwise on that other goroutine, which waits for the
// answer, reads and judges it and then runs done. A request sent again
// within the attempt (on a new connection, or with a new OAuth2 token) is
// waited for the same way.
//
// Why: a goroutine's stack, once grown, stays grown while it waits. The
// caller's runs deep (the pipeline's stages, signing) and would hold
// 8 KiB for every slow delivery in flight; the waiting goroutine starts
// small and waits at a shallow depth (BenchmarkInFlight's
// stack-B/in-flight). An answer that comes at once is not worth a
// goroutine, and the stack growth of running done on a new one.
func (c *Client) Start(ctx context.Context, t *webhook.Target, id string, body []byte, done func(Result)) {
	a := c.begin(ctx, t, id, body)
	for {
		if a.waiting() && !a.x.waitBriefly(c.quick) {
			go a.await(done)
			return
		}
		if a.finished(done) {
			return
		}
	}
}

// quickAnswer is how long Start waits for an answer on the calling
// goroutine: a nearby endpoint's answer, not a slow one's (real endpoints
// take 100 ms and more). Deliveries answered within it hold the caller's
// stack meanwhile: at 20,000/s, 400 of them; a slow delivery holds it for
// quickAnswer, not for its answer. At 5 ms, a third of a loopback
// receiver's answers on a busy 2-core machine took longer, and the CPU
// per delivery rose by about a tenth; at 20 ms, 3.5 % did, at no cost
// measured (README "Performance").
const quickAnswer = 20 * time.Millisecond

// await waits for the answer, then judges it and calls done. Its frame is
// under the wait, so what judged returns stays out of it (finished).
func (a *attempt) await(done func(Result)) {
	for {
		a.x.wait()
		if a.finished(done) {
			return
		}
	}
}

// finished judges the answer waited for and calls done with the result,
// unless the request was sent again (again: its answer is to be waited
// for).
//
//go:noinline
func (a *attempt) finished(done func(Result)) bool {
	r, again := a.judged()
	if !again {
		done(a.result(r))
	}
	return !again
}

// result ends the attempt with r and gives it back to its pool. r's
// Response is its own array (discard appends to a nil kept), never the
// attempt's.
func (a *attempt) result(r Result) Result {
	r.Duration = time.Since(a.start)
	*a = attempt{}
	attempts.Put(a)
	return r
}

// attempt is an attempt in progress, from its request's writing (begin)
// to its judged answer (end).
type attempt struct {
	c        *Client
	ctx      context.Context
	t        *webhook.Target
	id       string
	body     []byte
	start    time.Time
	deadline time.Time // bounds the attempt, the replaced token's request included
	signed   time.Time // the request's webhook-timestamp
	token    string    // the OAuth2 access token sent, if any
	renewed  bool      // the token was replaced once
	ended    *Result   // the attempt ended before its request was written
	ts       [20]byte  // the request's Webhook-Timestamp, and its signatures: the fields' bytes
	sig      [128]byte
	fields   [8]field
	req      request
	x        exchange
}

// attempts holds attempts ended, for the next ones: they are as large as
// their request's fields and signatures.
var attempts = sync.Pool{New: func() any { return new(attempt) }}

// begin starts an attempt: it writes the request, or ends the attempt.
func (c *Client) begin(ctx context.Context, t *webhook.Target, id string, body []byte) *attempt {
	a := attempts.Get().(*attempt)
	a.c, a.ctx, a.t, a.id, a.body, a.start = c, ctx, t, id, body, time.Now()
	// One deadline bounds the attempt. No context is derived from ctx for
	// it unless a connection is dialled or a token fetched: on the hot path
	// the connection's deadline is the timer.
	a.deadline = a.start.Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(a.deadline) {
		a.deadline = d
	}
	a.send()
	return a
}

// waiting reports whether the request was written and its answer is to be
// waited for (a.x.wait).
func (a *attempt) waiting() bool { return a.ended == nil && a.x.waiting() }

// send renders, signs and authenticates the request and starts its
// exchange, or ends the attempt (a.ended).
func (a *attempt) send() {
	c, t := a.c, a.t
	if t.URL == nil {
		a.ended = &Result{Verdict: Unreachable, Class: classInvalidURL}
		return
	}
	now := time.Now()
	ts := now.Unix()
	a.signed = now
	a.req = request{url: t.URL, custom: t.Header, body: a.body, keep: c.opts.ResponseBytes, fields: append(a.fields[:0],
		field{name: "Content-Type", value: "application/json"},
		field{name: "User-Agent", value: c.opts.UserAgent},
		field{name: "Webhook-Id", value: a.id},
		field{name: "Webhook-Timestamp", raw: strconv.AppendInt(a.ts[:0], ts, 10)},
		field{name: "Webhook-Signature", raw: t.AppendSignatures(a.sig[:0], a.id, ts, a.body, now)},
	)}
	if sc := trace.SpanContextFromContext(a.ctx); sc.IsValid() {
		a.req.fields = appendTraceContext(a.req.fields, sc)
	}
	switch {
	case t.JWT != nil:
		jwt, err := t.JWT.Token(a.id, a.body, now)
		if err != nil {
			a.ended = &Result{Verdict: Unreachable, Class: classAuthConfig}
			return
		}
		a.req.fields = append(a.req.fields, field{name: "Authorization", value: "Bearer " + jwt})
	case t.OAuth2 != nil:
		tctx, cancel := context.WithDeadline(a.ctx, a.deadline)
		var err error
		a.token, err = c.tokens.Token(tctx, t.OAuth2)
		cancel()
		if err != nil {
			if errors.Is(a.ctx.Err(), context.Canceled) {
				a.ended = &Result{Verdict: Aborted, Class: classCanceled}
			} else {
				a.ended = &Result{Verdict: Retry, Class: classOAuth2Token}
			}
			return
		}
		a.req.fields = append(a.req.fields, field{name: "Authorization", value: "Bearer " + a.token})
	}
	// The status alone is the answer; at most MaxResponseBytes of the body
	// are read, so that the connection can be reused.
	c.tr.begin(a.ctx, a.deadline, &a.req, c.opts.MaxResponseBytes, &a.x)
}

// judged is the result of the request sent, once its answer was waited
// for; or again, when the request was sent once more within the attempt
// and that answer is to be waited for: on a new connection (see
// exchange.end), or with a new token once the endpoint refused an OAuth2
// token, which happens once.
func (a *attempt) judged() (r Result, again bool) {
	if a.ended != nil {
		return *a.ended, false
	}
	status, h, answered, again, err := a.x.end()
	switch {
	case again:
		return Result{}, true
	case err != nil:
		return classify(a.ctx, err, answered), false
	case status == http.StatusProxyAuthRequired && a.c.tr.proxy != nil:
		// Only a proxy sends 407: the answer to a plain-http request
		// through it, never the endpoint's.
		return Result{Verdict: Retry, Class: classProxyAuth}, false
	case status == http.StatusUnauthorized && a.token != "" && !a.renewed:
		a.c.tokens.Invalidate(a.t.OAuth2, a.token)
		a.renewed = true
		a.send()
		return Result{}, true
	}
	r = judge(status, h, a.signed)
	r.Response, r.Truncated = a.req.kept, a.req.truncated
	return r, false
}

// judge applies the status rules to an HTTP response.
func judge(status int, h http.Header, now time.Time) Result {
	r := Result{Status: status}
	if status >= 200 && status < 300 {
		r.Verdict = Delivered
		return r
	}
	r.Class = "http_" + strconv.Itoa(status)
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests, status >= 500:
		r.Verdict = Retry
		r.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	case status == http.StatusGone:
		r.Verdict = Gone
	default: // 1xx, 3xx, other 4xx
		r.Verdict = Reject
	}
	return r
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// classify applies the rules to an attempt that got no response. answered
// says whether the endpoint sent any bytes of a response.
func classify(ctx context.Context, err error, answered bool) Result {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		opErr   *net.OpError
		urlErr  *url.Error
		netErr  net.Error
		pxErr   *proxyError
	)
	retry := func(class string) Result { return Result{Verdict: Retry, Class: class} }
	switch {
	case errors.Is(err, netguard.ErrBlocked):
		return Result{Verdict: Unreachable, Class: classBlocked}
	case errors.Is(ctx.Err(), context.Canceled):
		return Result{Verdict: Aborted, Class: classCanceled}
	case errors.As(err, &pxErr):
		return retry(pxErr.class)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return retry(classTimeout)
	case errors.As(err, &dnsErr):
		return retry(classDNS)
	case errors.As(err, &certErr), errors.As(err, &uaErr), errors.As(err, &hostErr), errors.As(err, &invErr):
		return retry(classTLSCertificate)
	// crypto/tls reports an alert from the peer as a *net.OpError whose Op
	// is "remote error" (its alert type is unexported); net/http turns a
	// plain HTTP answer to our ClientHello into ErrSchemeMismatch.
	case errors.As(err, &recErr), errors.As(err, &alert), errors.Is(err, http.ErrSchemeMismatch),
		errors.As(err, &opErr) && opErr.Op == "remote error":
		return retry(classTLSHandshake)
	case errors.Is(err, syscall.ECONNREFUSED):
		return retry(classRefused)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return retry(classReset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return retry(classClosed)
	case errors.As(err, &urlErr) && urlErr.Op == "parse":
		return Result{Verdict: Unreachable, Class: classInvalidURL}
	case errors.Is(err, errHeaderValue): // a config saved before validation refused such values
		return Result{Verdict: Unreachable, Class: classInvalidHeader}
	case answered: // malformed status line or headers, oversized head, bad framing
		return retry(classBadResponse)
	default:
		return retry(classNetwork)
	}
}

// appendTraceContext appends the W3C trace-context headers of sc, the
// attempt's span (the pipeline's, when tracing): traceparent, and
// tracestate if it has one. They then replace any the config has (see
// reserved); without a span in the context nothing is written, and a
// config's own traceparent goes out as it is.
func appendTraceContext(fields []field, sc trace.SpanContext) []field {
	var b [55]byte // "00-" trace id "-" span id "-" flags
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	fields = append(fields, field{name: "Traceparent", value: string(b[:])})
	if ts := sc.TraceState().String(); ts != "" {
		fields = append(fields, field{name: "Tracestate", value: ts})
	}
	return fields
}
