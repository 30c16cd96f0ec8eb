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
// the connection. A connection still being set up when its attempt ends
// (net/http finishes it, to pool it) gets at most min(Timeout, 10s) to
// connect and as long again for its TLS handshake. Once a status line and
// headers have arrived, the status alone decides: what then happens to the
// body (cut, reset, bad chunking, a trickle ended by the deadline) does not
// change the verdict, because the endpoint has answered. An attempt without
// a valid answer gets one of the classes listed with classTimeout and is
// retried, unless the address is forbidden or the URL invalid.
package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

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
	classAuthConfig     = "auth_config"        // the JWT cannot be made (Unreachable)
	classOAuth2Token    = "oauth2_token"       // no access token could be fetched
	classCanceled       = "canceled"           // our own context ended (Aborted)
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
}

// Outcome is the metric label of the attempt: success, retryable, rejected
// (an HTTP status that is not retried) or error (no HTTP response).
func (r Result) Outcome() string {
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
	Guard               *netguard.Guard // which addresses may be dialed; nil: public ones only
	UserAgent           string
	TLSConfig           *tls.Config // nil: system roots
	MaxIdleConnsPerHost int
	Registerer          prometheus.Registerer // nil: metrics are not exported
}

// Client sends attempts. It is safe for concurrent use and keeps
// connections alive per endpoint.
type Client struct {
	http      *http.Client
	opts      Options
	tokens    *endpointauth.TokenCache
	userAgent []string // the User-Agent header's value, shared by requests
}

var contentTypeJSON = []string{"application/json"}

// New builds a Client. Proxies from the environment are ignored on purpose:
// a proxy would dial on our behalf and bypass the address check.
func New(opts Options) *Client {
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 10
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 64
	}
	if opts.Guard == nil {
		opts.Guard = &netguard.Guard{}
	}
	// The transport finishes a dial after the attempt that started it has
	// ended, to pool the connection; so connecting and the TLS handshake
	// each get a bound of their own, no longer than an attempt: an endpoint
	// that never completes a handshake cannot pile up sockets behind
	// attempts that have already returned.
	setup := min(opts.Timeout, 10*time.Second)
	guard := opts.Guard
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, setup)
			defer cancel()
			return guard.DialContext(ctx, network, address)
		},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    opts.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    setup,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        opts.TLSConfig,
	}
	hc := &http.Client{
		Transport: tr,
		// Never follow redirects: a 3xx is the endpoint's answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		// No Timeout here: Send bounds every attempt (and the OAuth2 token
		// request made within it) with its context, one timer instead of two.
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	fetches := promauto.With(opts.Registerer).NewCounterVec(prometheus.CounterOpts{
		Name: "feedbackd_oauth2_token_requests_total",
		Help: "Access-token requests to tenants' OAuth2 token endpoints, by result (ok, error).",
	}, []string{"result"})
	return &Client{opts: opts, http: hc, tokens: endpointauth.NewTokenCache(hc, fetches), userAgent: []string{opts.UserAgent}}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Send makes one attempt: it signs body for webhook id with the target's
// secrets at the current time, authenticates as the target's auth says,
// POSTs it, and judges the answer. ctx bounds the attempt together with
// Options.Timeout. An OAuth2 access token the endpoint refuses (401) is
// replaced once, within the attempt.
func (c *Client) Send(ctx context.Context, t *webhook.Target, id string, body []byte) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	r, token := c.attempt(ctx, t, id, body)
	if r.Status == http.StatusUnauthorized && token != "" {
		c.tokens.Invalidate(t.OAuth2, token)
		r, _ = c.attempt(ctx, t, id, body)
	}
	r.Duration = time.Since(start)
	return r
}

// attempt sends one request; it returns the OAuth2 token it used, if any.
func (c *Client) attempt(ctx context.Context, t *webhook.Target, id string, body []byte) (Result, string) {
	now := time.Now()
	// answered tells a response head that could not be parsed from no
	// response at all. Only the webhook request is traced: an OAuth2 token
	// request made with ctx does not count.
	var answered atomic.Bool
	traced := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { answered.Store(true) }})
	req, err := http.NewRequestWithContext(traced, http.MethodPost, t.Config.URL, bytes.NewReader(body))
	if err != nil {
		return Result{Verdict: Unreachable, Class: classInvalidURL}, ""
	}
	h := make(http.Header, len(t.Header)+7)
	for k, v := range t.Header { // custom first: reserved headers below win
		h[k] = v
	}
	ts := now.Unix()
	// The transport only reads headers, so constant values are shared and
	// the per-request ones share one backing array.
	h["Content-Type"] = contentTypeJSON
	h["User-Agent"] = c.userAgent
	v := [...]string{id, strconv.FormatInt(ts, 10), string(t.AppendSignatures(make([]byte, 0, 48), id, ts, body, now))}
	vals := v[:]
	h["Webhook-Id"] = vals[0:1:1]
	h["Webhook-Timestamp"] = vals[1:2:2]
	h["Webhook-Signature"] = vals[2:3:3]
	var token string
	switch {
	case t.JWT != nil:
		jwt, err := t.JWT.Token(id, body, now)
		if err != nil {
			return Result{Verdict: Unreachable, Class: classAuthConfig}, ""
		}
		h["Authorization"] = []string{"Bearer " + jwt}
	case t.OAuth2 != nil:
		if token, err = c.tokens.Token(ctx, t.OAuth2); err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return Result{Verdict: Aborted, Class: classCanceled}, ""
			}
			return Result{Verdict: Retry, Class: classOAuth2Token}, ""
		}
		h["Authorization"] = []string{"Bearer " + token}
	}
	req.Header = h

	resp, err := c.http.Do(req)
	if err != nil {
		return classify(ctx, err, answered.Load()), token
	}
	// Read a bounded amount so the connection can be reused; a longer body
	// is cut and the connection closed. The read ends with ctx at the
	// latest. Its error is ignored on purpose: the status is the answer.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.opts.MaxResponseBytes))
	resp.Body.Close()
	return judge(resp.StatusCode, resp.Header, now), token
}

// judge applies the status rules to an HTTP response.
func judge(status int, h http.Header, now time.Time) Result {
	r := Result{Status: status, Class: "http_" + strconv.Itoa(status)}
	switch {
	case status >= 200 && status < 300:
		r.Verdict, r.Class = Delivered, ""
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
	)
	retry := func(class string) Result { return Result{Verdict: Retry, Class: class} }
	switch {
	case errors.Is(err, netguard.ErrBlocked):
		return Result{Verdict: Unreachable, Class: classBlocked}
	case errors.Is(ctx.Err(), context.Canceled):
		return Result{Verdict: Aborted, Class: classCanceled}
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
	case answered: // malformed status line or headers, oversized head, bad framing
		return retry(classBadResponse)
	default:
		return retry(classNetwork)
	}
}
