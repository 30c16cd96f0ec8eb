package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestParseProxy(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // "" when accepted
	}{
		{"http://127.0.0.1:3128", ""},
		{"http://proxy.internal:8080/", ""},
		{"http://user:s3cret@proxy.internal:8080", ""},
		{"http://[::1]:3128", ""},
		{"https://proxy.internal:3128", "https proxies are not supported"},
		{"socks5://proxy.internal:1080", "must be http://"},
		{"proxy.internal:3128", "must be http://"},
		{"http://proxy.internal", "needs a port"},
		{"http://user:s3cret@proxy.internal", "needs a port"},
		{"http://proxy.internal:0", "needs a port"},
		{"http://proxy.internal:65536", "needs a port"},
		{"http://proxy.internal:3128/path", "without path"},
		{"http://proxy.internal:3128?q=1", "without path"},
		{"http://:s3cret@proxy.internal:3128", "without a user name"},
		{"http://user:s3cret@proxy.internal:31 28", "not a URL"},
		{"http://user:s3cret@[::1", "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseProxy(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseProxy: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseProxy = %v, want an error with %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("the error quotes the password: %v", err)
			}
		})
	}
}

// proxied returns a client for s's deliveries through the proxy at
// proxyURL.
func proxied(t *testing.T, s *counted, proxyURL string, guard *netguard.Guard) *Client {
	t.Helper()
	u, err := ParseProxy(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	if guard == nil {
		guard = &netguard.Guard{AllowPrivate: true}
	}
	o := Options{Timeout: 3 * time.Second, Guard: guard, MaxResponseBytes: 1 << 10, UserAgent: "feedbackd/test", Proxy: u}
	if s != nil && s.TLS != nil {
		o.TLSConfig = s.Server.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	}
	c := New(o)
	t.Cleanup(c.Close)
	return c
}

func port(t *testing.T, rawURL string) int {
	t.Helper()
	u, _ := url.Parse(rawURL)
	p, _ := strconv.Atoi(u.Port())
	return p
}

// Deliveries through a real proxy (tinyproxy): https through a CONNECT
// tunnel, its connection reused; http in absolute form.
func TestProxyDelivers(t *testing.T) {
	for _, scheme := range []string{"https", "http"} {
		t.Run(scheme, func(t *testing.T) {
			var uris atomic.Value
			s := newCounted(t, scheme == "https", 0, func(w http.ResponseWriter, r *http.Request) {
				uris.Store(r.RequestURI + " " + r.Header.Get("Proxy-Authorization"))
			})
			px := testenv.StartTinyproxy(t, testenv.TinyproxyConfig{ConnectPorts: []int{port(t, s.URL)}, User: "feedbackd", Pass: "s3cret"})
			c := proxied(t, s, px.URL("feedbackd", "s3cret"), nil)
			tg, _ := target(t, s.URL+"/hook?tenant=a", nil)
			for i := range 5 {
				if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
					t.Fatalf("attempt %d: Send = %+v\n%s", i, r, px.Log())
				}
			}
			if got := uris.Load(); got != "/hook?tenant=a " {
				t.Errorf("the endpoint got %q, want the path and query, no Proxy-Authorization", got)
			}
			if scheme == "https" {
				if n := s.conns.Load(); n != 1 {
					t.Errorf("5 sequential attempts through the tunnel used %d connections to the endpoint, want 1", n)
				}
				if n := strings.Count(px.Log(), "): CONNECT "); n != 1 {
					t.Errorf("the proxy logged %d CONNECTs, want 1:\n%s", n, px.Log())
				}
			} else if !strings.Contains(px.Log(), "POST "+s.URL+"/hook?tenant=a") {
				t.Errorf("the proxy did not log an absolute-form request:\n%s", px.Log())
			}
		})
	}
}

// A proxy that refuses is a classified error, retried; none of the
// classes or errors carries the password.
func TestProxyRefuses(t *testing.T) {
	s := newCounted(t, true, 0, nil)
	plain := newCounted(t, false, 0, nil)
	tests := []struct {
		name    string
		server  *counted
		cfg     testenv.TinyproxyConfig
		user    string // credentials the client sends
		down    bool   // the proxy is stopped before the attempt
		wantCls string
	}{
		{"CONNECT to a port the proxy does not allow", s, testenv.TinyproxyConfig{ConnectPorts: []int{1}}, "", false, "proxy_403"},
		{"CONNECT with the wrong password", s, testenv.TinyproxyConfig{User: "feedbackd", Pass: "right"}, "wrong", false, classProxyAuth},
		{"CONNECT without a password", s, testenv.TinyproxyConfig{User: "feedbackd", Pass: "right"}, "", false, classProxyAuth},
		{"http without a password (407)", plain, testenv.TinyproxyConfig{User: "feedbackd", Pass: "right"}, "", false, classProxyAuth},
		{"the proxy is down", s, testenv.TinyproxyConfig{}, "", true, classProxyUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px := testenv.StartTinyproxy(t, tt.cfg)
			proxyURL := px.URL("", "")
			if tt.user != "" {
				proxyURL = px.URL("feedbackd", tt.user)
			}
			c := proxied(t, tt.server, proxyURL, nil)
			if tt.down {
				px.Stop()
			}
			before := tt.server.requests.Load()
			tg, _ := target(t, tt.server.URL+"/hook", nil)
			r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`))
			if r.Verdict != Retry || r.Class != tt.wantCls || r.Status != 0 {
				t.Fatalf("Send = %+v, want retried as %s\n%s", r, tt.wantCls, px.Log())
			}
			if n := tt.server.requests.Load() - before; n != 0 {
				t.Errorf("the endpoint got %d requests", n)
			}
		})
	}
}

type noSuchHost struct{}

func (noSuchHost) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// The Guard judges the endpoint's host before the proxy is asked: a
// blocked address is address_blocked, not retried, and the proxy sees
// nothing. The proxy's own address (loopback) is exempt.
func TestProxyChecksTargetFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	c := proxied(t, nil, "http://u:s3cret@"+ln.Addr().String(), &netguard.Guard{})
	for _, u := range []string{"https://127.0.0.1:8443/hook", "http://localhost/hook", "https://[::ffff:169.254.169.254]/latest", "https://10.0.0.1/"} {
		tg, _ := target(t, u, nil)
		if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Unreachable || r.Class != classBlocked {
			t.Errorf("%s: Send = %+v, want unreachable, address_blocked", u, r)
		}
	}
	// A name feedbackd cannot resolve is not left to the proxy either.
	c2 := proxied(t, nil, "http://"+ln.Addr().String(), &netguard.Guard{Resolver: noSuchHost{}})
	tg, _ := target(t, "https://unresolvable.example/hook", nil)
	if r := c2.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Retry || r.Class != classDNS {
		t.Errorf("unresolvable name: Send = %+v, want retried as dns", r)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the proxy got %d connections, want none", n)
	}
	// The same guard lets a public address through to the proxy, whose
	// loopback address is not judged (here it closes at once).
	tg, _ = target(t, "https://93.184.215.14/hook", nil)
	if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Retry || r.Class != classProxyUnreachable {
		t.Errorf("public address: Send = %+v, want retried as proxy_unreachable", r)
	}
	if accepted.Load() == 0 {
		t.Error("the proxy got no connection for a public address")
	}
}

// What a proxy answers to CONNECT, played by a raw server: only a 2xx
// with nothing after it opens the tunnel.
func TestProxyConnectAnswers(t *testing.T) {
	s := newCounted(t, true, 0, nil)
	tests := []struct {
		name, answer, wantCls string
	}{
		{"502 from the proxy", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", "proxy_502"},
		{"407", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n", classProxyAuth},
		{"garbage", "SSH-2.0-OpenSSH_9.2\r\n", classProxyUnreachable},
		{"closed before answering", "", classProxyUnreachable},
		{"bytes after the 200", "HTTP/1.1 200 Connection established\r\n\r\nextra", classProxyUnreachable},
		{"an endless head", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 20000), classProxyUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var connects atomic.Value
			raw := startRaw(t, func(_ *rawServer, c net.Conn) {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				connects.Store(req.Method + " " + req.Host + " " + req.Header.Get("Proxy-Authorization"))
				io.WriteString(c, tt.answer)
				time.Sleep(100 * time.Millisecond)
			})
			c := proxied(t, s, "http://feedbackd:s3cret@"+raw.ln.Addr().String(), nil)
			tg, _ := target(t, s.URL+"/hook", nil)
			if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Retry || r.Class != tt.wantCls {
				t.Errorf("Send = %+v, want retried as %s", r, tt.wantCls)
			}
			want := "CONNECT " + strings.TrimPrefix(s.URL, "https://") + " Basic ZmVlZGJhY2tkOnMzY3JldA=="
			if got := connects.Load(); got != want {
				t.Errorf("the proxy got %q, want %q", got, want)
			}
		})
	}
}

// The reuse rules hold through a tunnel: bytes the endpoint sends after
// its answer retire the connection, and the next request gets a new
// tunnel and the endpoint's real answer.
func TestProxyRetiresConnectionsWithLeftovers(t *testing.T) {
	cert, pool := selfSigned(t, nil)
	var conns atomic.Int32
	s := startRaw(t, func(s *rawServer, c net.Conn) {
		conns.Add(1)
		c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		for s.readRequest(c) {
			if s.requests.Load() > 1 {
				io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	px := testenv.StartTinyproxy(t, testenv.TinyproxyConfig{})
	u, _ := ParseProxy(px.URL("", ""))
	c := New(Options{Timeout: 3 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, TLSConfig: &tls.Config{RootCAs: pool}, Proxy: u})
	t.Cleanup(c.Close)
	tenantA, _ := target(t, s.url("https")+"?tenant=a", nil)
	tenantB, _ := target(t, s.url("https")+"?tenant=b", nil)
	if r := c.Send(context.Background(), tenantA, "msg_1", []byte(`{}`)); r.Verdict != Delivered || r.Status != 204 {
		t.Fatalf("first attempt: Send = %+v, want delivered with 204\n%s", r, px.Log())
	}
	time.Sleep(250 * time.Millisecond) // the leftovers have come through the tunnel
	if r := c.Send(context.Background(), tenantB, "msg_2", []byte(`{}`)); r.Verdict != Retry || r.Status != 500 {
		t.Errorf("second attempt: Send = %+v, want the endpoint's 500, retried", r)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d tunnels, want 2 (the first retired)", n)
	}
}

// OAuth2 token requests go through the same proxy, with the same check
// of the token URL's host first.
func TestProxyCarriesTokenRequests(t *testing.T) {
	var tokens atomic.Int32
	tokenSrv := newCounted(t, true, 0, func(w http.ResponseWriter, r *http.Request) {
		tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`)
	})
	var auth atomic.Value
	s := newCounted(t, true, 0, func(w http.ResponseWriter, r *http.Request) { auth.Store(r.Header.Get("Authorization")) })
	px := testenv.StartTinyproxy(t, testenv.TinyproxyConfig{User: "feedbackd", Pass: "s3cret"})
	c := proxied(t, s, px.URL("feedbackd", "s3cret"), nil)
	tg, _ := target(t, s.URL+"/hook", nil)
	tg.OAuth2 = endpointauth.NewOAuth2("cfg", tokenSrv.URL+"/token", "client", "secret", "", "")
	if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
		t.Fatalf("Send = %+v\n%s", r, px.Log())
	}
	if got := auth.Load(); got != "Bearer tok-1" || tokens.Load() != 1 {
		t.Errorf("the endpoint got Authorization %q after %d token requests", got, tokens.Load())
	}
	tokenAddr := strings.TrimPrefix(tokenSrv.URL, "https://")
	if !strings.Contains(px.Log(), "): CONNECT "+tokenAddr+" ") {
		t.Errorf("the token request did not go through the proxy:\n%s", px.Log())
	}

	// A token URL on a blocked address is refused before the proxy is asked.
	c = proxied(t, s, px.URL("feedbackd", "s3cret"), &netguard.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	blocked, _ := target(t, s.URL+"/hook", nil)
	blocked.OAuth2 = endpointauth.NewOAuth2("cfg2", "https://10.1.2.3/token", "client", "secret", "", "")
	if r := c.Send(context.Background(), blocked, "msg_2", []byte(`{}`)); r.Verdict != Retry || r.Class != classOAuth2Token {
		t.Errorf("blocked token URL: Send = %+v, want retried as oauth2_token", r)
	}
	if strings.Contains(px.Log(), "10.1.2.3") {
		t.Errorf("the proxy was asked for the blocked token URL:\n%s", px.Log())
	}
}

// Plain-http requests through a proxy that keeps connections alive (a
// raw one: tinyproxy closes them): absolute form with the proxy's
// credentials, a connection reused per endpoint, never across endpoints,
// and retired when bytes follow an answer.
func TestProxyAbsoluteFormReuse(t *testing.T) {
	var (
		mu    sync.Mutex
		lines []string
		conns atomic.Int32
	)
	s := startRaw(t, func(s *rawServer, c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			mu.Lock()
			lines = append(lines, req.Method+" "+req.RequestURI+" "+req.Header.Get("Proxy-Authorization"))
			mu.Unlock()
			switch n := s.requests.Add(1); {
			case strings.Contains(req.RequestURI, "leftover") && n == 4:
				io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			case strings.Contains(req.RequestURI, "leftover"):
				io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			}
		}
	})
	c := proxied(t, nil, "http://feedbackd:s3cret@"+s.ln.Addr().String(), nil)
	send := func(url string) Result {
		tg, _ := target(t, url, nil)
		return c.Send(context.Background(), tg, "msg_1", []byte(`{}`))
	}
	for _, u := range []string{"http://a.example:8080/hook?tenant=a", "http://a.example:8080/hook?tenant=b", "http://b.example/x"} {
		if r := send(u); r.Verdict != Delivered {
			t.Fatalf("%s: Send = %+v", u, r)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections to the proxy, want 2 (one per endpoint)", n)
	}
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	auth := " Basic ZmVlZGJhY2tkOnMzY3JldA=="
	want := "POST http://a.example:8080/hook?tenant=a" + auth + "\nPOST http://a.example:8080/hook?tenant=b" + auth + "\nPOST http://b.example/x" + auth
	if got != want {
		t.Errorf("the proxy got\n%s\nwant\n%s", got, want)
	}

	if r := send("http://c.example/leftover?tenant=a"); r.Verdict != Delivered || r.Status != 204 {
		t.Fatalf("first leftover attempt: Send = %+v, want delivered with 204", r)
	}
	time.Sleep(200 * time.Millisecond)
	if r := send("http://c.example/leftover?tenant=b"); r.Verdict != Retry || r.Status != 500 {
		t.Errorf("second attempt: Send = %+v, want the endpoint's 500, retried", r)
	}
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections to the proxy, want 4 (the leftover one retired)", n)
	}
}
