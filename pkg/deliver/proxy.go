package deliver

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// proxy is the egress proxy every delivery goes through: a tunnel
// (CONNECT) for https endpoints, absolute-form requests for http ones.
type proxy struct {
	addr string // host:port, what logs may show
	auth string // Proxy-Authorization value, "" without userinfo; a secret
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// ParseProxy reads delivery.proxy: http://[user:pass@]host:port, nothing
// else (no path, query or fragment; https proxies are not supported). Its
// errors quote no part of s: a mistyped URL can put the password anywhere.
func ParseProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the input, password included.
		return nil, errors.New("not a URL (http://[user:pass@]host:port)")
	}
	switch {
	case u.Scheme == "https":
		return nil, errors.New("https proxies are not supported: use http://host:port (the tunnel to an https endpoint is TLS end to end)")
	case u.Scheme != "http":
		return nil, errors.New("must be http://[user:pass@]host:port")
	case u.Opaque != "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("must be http://[user:pass@]host:port, without path or query")
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 || u.Port() != strconv.Itoa(port) {
		return nil, errors.New("needs a port 1..65535 (http://[user:pass@]host:port)")
	}
	if u.User != nil && u.User.Username() == "" {
		return nil, errors.New("userinfo without a user name")
	}
	return u, nil
}

// ProxyAddr is the host:port of a proxy URL, the one part of it that logs
// show.
func ProxyAddr(u *url.URL) string { return u.Host }

func newProxy(u *url.URL) *proxy {
	p := &proxy{addr: u.Host}
	if u.User != nil {
		pass, _ := u.User.Password()
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	// The proxy's own address is exempt from the Guard: it is the
	// operator's, and usually private or loopback.
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	p.dial = d.DialContext
	return p
}

// proxyError is an attempt the proxy did not carry: Class is
// proxy_unreachable (no connection to the proxy, or no valid answer to
// CONNECT), proxy_auth (407, or 401 to CONNECT) or proxy_<status> (any
// other refusal of CONNECT). It never holds the proxy's password.
type proxyError struct {
	class string
	err   error // the cause, for %w; never a secret
}

func (e *proxyError) Error() string {
	if e.err == nil {
		return "proxy: " + e.class
	}
	return "proxy: " + e.class + ": " + e.err.Error()
}
func (e *proxyError) Unwrap() error { return e.err }

var errProxyLeftover = errors.New("bytes after the answer to CONNECT")

// open returns a connection through the proxy to address (host:port):
// for a tunnel, one on which the proxy answered CONNECT with 2xx; else one
// to the proxy itself, for absolute-form requests. It ends when ctx does.
func (p *proxy) open(ctx context.Context, address string, tunnel bool, maxHead int64) (net.Conn, error) {
	nc, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, &proxyError{class: classProxyUnreachable, err: err}
	}
	if !tunnel {
		return nc, nil
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	err = p.connect(nc, address, maxHead)
	if !stop() || ctx.Err() != nil {
		nc.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// connect asks for a tunnel on nc and reads the answer, at most maxHead
// bytes of it.
func (p *proxy) connect(nc net.Conn, address string, maxHead int64) error {
	b := make([]byte, 0, 128)
	b = append(b, "CONNECT "...)
	b = append(b, address...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, address...)
	b = append(b, "\r\n"...)
	if p.auth != "" {
		b = append(b, "Proxy-Authorization: "...)
		b = append(b, p.auth...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if _, err := nc.Write(b); err != nil {
		return p.unreachable(err)
	}
	// The reader takes no byte after the head that it is not given: a
	// proxy sends nothing after its 2xx before the endpoint's TLS answer,
	// which comes only after our ClientHello.
	lim := &limitReader{r: nc, n: maxHead}
	br := bufio.NewReaderSize(lim, 1<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return p.unreachable(err)
	}
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired, resp.StatusCode == http.StatusUnauthorized:
		// Only the proxy answers CONNECT, and some (tinyproxy 1.11)
		// answer wrong credentials with 401.
		return &proxyError{class: classProxyAuth}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &proxyError{class: "proxy_" + strconv.Itoa(resp.StatusCode)}
	case br.Buffered() > 0:
		return &proxyError{class: classProxyUnreachable, err: errProxyLeftover}
	}
	return nil
}

// unreachable wraps a failure to exchange CONNECT, except a timeout,
// which stays one.
func (p *proxy) unreachable(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return &proxyError{class: classProxyUnreachable, err: err}
}
