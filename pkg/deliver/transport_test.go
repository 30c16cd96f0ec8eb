package deliver

import (
	"context"
	"crypto/tls"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// counted is an HTTP/1.1 test server that counts the connections it
// accepted and the requests it served, and closes idle connections after
// idle (0: never).
type counted struct {
	*httptest.Server
	conns, closed, requests atomic.Int32
	proto                   atomic.Value // the last request's protocol
}

func newCounted(t *testing.T, tls bool, idle time.Duration, h http.HandlerFunc) *counted {
	t.Helper()
	s := &counted{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.proto.Store(r.Proto)
		if h != nil {
			h(w, r)
		}
	}))
	s.Config.IdleTimeout = idle
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed:
			s.closed.Add(1)
		}
	}
	s.Config.ErrorLog = quietLog()
	if tls {
		s.EnableHTTP2 = true
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *counted) client(t *testing.T) *Client {
	t.Helper()
	var cfg = (*http.Transport)(nil)
	if s.TLS != nil {
		cfg = s.Server.Client().Transport.(*http.Transport)
	}
	o := Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, MaxResponseBytes: 1 << 10, UserAgent: "feedbackd/test"}
	if cfg != nil {
		o.TLSConfig = cfg.TLSClientConfig.Clone()
	}
	c := New(o)
	t.Cleanup(c.Close)
	return c
}

func TestTransportReusesConnections(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https offering HTTP/2"}[tls]
		t.Run(name, func(t *testing.T) {
			s := newCounted(t, tls, 0, nil)
			c := s.client(t)
			tg, _ := target(t, s.URL+"/hook?tenant=a", nil)
			for range 5 {
				if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
					t.Fatalf("Send = %+v", r)
				}
			}
			if n := s.conns.Load(); n != 1 {
				t.Errorf("5 sequential attempts used %d connections, want 1", n)
			}
			if p := s.proto.Load(); p != "HTTP/1.1" {
				t.Errorf("protocol %v, want HTTP/1.1", p)
			}
		})
	}
}

// Each case makes two attempts in a row; the second must not fail because
// of what the first left on the connection, and must reuse it only when
// that is safe.
func TestTransportReuseRules(t *testing.T) {
	big := make([]byte, 4<<10) // over MaxResponseBytes (1 KiB)
	tests := []struct {
		name      string
		idle      time.Duration // the server closes idle connections after this
		pause     time.Duration // between the two attempts
		handler   http.HandlerFunc
		wantConns int32
	}{
		{"empty answers", 0, 0, nil, 1},
		{"answer with a short body", 0, 0, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }, 1},
		{"chunked answer", 0, 0, func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		}, 1},
		{"1xx answers first", 0, 0, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		}, 1},
		{"Connection: close", 0, 0, func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("Connection", "close") }, 2},
		{"body of exactly MaxResponseBytes", 0, 0, func(w http.ResponseWriter, _ *http.Request) { w.Write(big[:1<<10]) }, 1},
		{"body one byte over MaxResponseBytes", 0, 0, func(w http.ResponseWriter, _ *http.Request) { w.Write(big[:1<<10+1]) }, 2},
		{"body over MaxResponseBytes", 0, 0, func(w http.ResponseWriter, _ *http.Request) { w.Write(big) }, 2},
		// Closed while idle: found by the check, or else by the request
		// (then made again on a new connection, within the attempt).
		{"server closed the idle connection", 50 * time.Millisecond, 300 * time.Millisecond, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newCounted(t, false, tt.idle, tt.handler)
			c := s.client(t)
			tg, _ := target(t, s.URL+"/hook", nil)
			for i := range 2 {
				if i == 1 {
					time.Sleep(tt.pause)
				}
				if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered || r.Status != 200 {
					t.Fatalf("attempt %d: Send = %+v", i+1, r)
				}
			}
			if n := s.conns.Load(); n != tt.wantConns {
				t.Errorf("%d connections, want %d", n, tt.wantConns)
			}
		})
	}
}

// An idle connection the server closed is found before reuse, even when the
// last attempt's deadline has passed meanwhile.
func TestTransportChecksIdleConnections(t *testing.T) {
	for _, closed := range []bool{false, true} {
		t.Run(map[bool]string{false: "open", true: "closed by the server"}[closed], func(t *testing.T) {
			idle := time.Duration(0)
			if closed {
				idle = 100 * time.Millisecond
			}
			s := newCounted(t, false, idle, nil)
			c := New(Options{Timeout: 300 * time.Millisecond, Guard: &netguard.Guard{AllowPrivate: true}})
			t.Cleanup(c.Close)
			tg, _ := target(t, s.URL+"/hook", nil)
			for i := range 2 {
				if i == 1 {
					time.Sleep(600 * time.Millisecond) // past the first attempt's deadline
				}
				if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
					t.Fatalf("attempt %d: Send = %+v", i+1, r)
				}
			}
			want := map[bool]int32{false: 1, true: 2}[closed]
			if n := s.conns.Load(); n != want {
				t.Errorf("%d connections, want %d", n, want)
			}
			if n := s.requests.Load(); n != 2 {
				t.Errorf("the server read %d requests, want 2", n)
			}
		})
	}
}

// Attempts each with a context of their own, cancelled after it, share
// connections: a context's end cuts short its own exchange only.
func TestTransportContextPerAttempt(t *testing.T) {
	s := newCounted(t, false, 0, nil)
	c := s.client(t)
	tg, _ := target(t, s.URL+"/hook", nil)
	for i := range 500 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if i%2 == 1 {
			ctx = context.Background()
		}
		r := c.Send(ctx, tg, "msg_1", []byte(`{}`))
		cancel()
		if r.Verdict != Delivered {
			t.Fatalf("attempt %d: Send = %+v", i+1, r)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestTransportConcurrentAttempts(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	s := newCounted(t, false, 0, func(w http.ResponseWriter, r *http.Request) {
		if inHandler.Add(1) == 16 {
			close(release)
		}
		<-release
		io.Copy(io.Discard, r.Body)
	})
	c := s.client(t)
	tg, _ := target(t, s.URL+"/hook", nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if r := c.Send(context.Background(), tg, "msg_1", make([]byte, 700)); r.Verdict != Delivered {
				t.Errorf("Send = %+v", r)
			}
		})
	}
	wg.Wait()
	for range 16 { // every connection went back to the pool: no new ones
		wg.Go(func() { c.Send(context.Background(), tg, "msg_2", []byte(`{}`)) })
		wg.Wait()
	}
	if n := s.conns.Load(); n != 16 {
		t.Errorf("%d connections, want 16", n)
	}
	if n := s.requests.Load(); n != 32 {
		t.Errorf("%d requests, want 32", n)
	}
}

func TestTransportClosesIdleConnections(t *testing.T) {
	s := newCounted(t, false, 0, nil)
	tg, _ := target(t, s.URL+"/hook", nil)

	c := s.client(t)
	c.tr.idleTimeout = 100 * time.Millisecond
	if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
		t.Fatalf("Send = %+v", r)
	}
	testenv.Eventually(t, "the idle connection to be closed after its idle timeout", 5*time.Second, func() bool { return s.closed.Load() == 1 })

	c = s.client(t)
	if r := c.Send(context.Background(), tg, "msg_2", []byte(`{}`)); r.Verdict != Delivered {
		t.Fatalf("Send = %+v", r)
	}
	c.Close()
	testenv.Eventually(t, "Close to close the idle connection", 5*time.Second, func() bool { return s.closed.Load() == 2 })
}

func TestTransportRefusesControlCharacters(t *testing.T) {
	s := newCounted(t, false, 0, nil)
	c := s.client(t)
	tg, _ := target(t, s.URL+"/hook", nil)
	r := c.Send(context.Background(), tg, "msg_1\r\nX-Injected: yes", []byte(`{}`))
	if r.Verdict != Unreachable || r.Class != classInvalidHeader || r.Status != 0 {
		t.Errorf("Send = %+v, want an unsendable request (invalid_header), not a retry", r)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("the server read %d requests, want 0", n)
	}
}

// Cancelling the context ends the exchange in progress, on a new
// connection and on one reused with the same context (whose watch was set
// by an earlier attempt).
func TestTransportCancel(t *testing.T) {
	var hangs atomic.Bool
	s := newCounted(t, false, 0, func(w http.ResponseWriter, r *http.Request) {
		if hangs.Load() {
			hang(w, r)
		}
	})
	tg, _ := target(t, s.URL+"/hook", nil)
	for _, reused := range []bool{false, true} {
		c := s.client(t)
		ctx, cancel := context.WithCancel(context.Background())
		hangs.Store(false)
		if reused {
			if r := c.Send(ctx, tg, "msg_0", []byte(`{}`)); r.Verdict != Delivered {
				t.Fatalf("first attempt: %+v", r)
			}
		}
		hangs.Store(true)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		r := c.Send(ctx, tg, "msg_1", []byte(`{}`))
		if r.Verdict != Aborted || r.Class != classCanceled {
			t.Errorf("reused %v: Send = %+v, want aborted", reused, r)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("reused %v: cancel ended the attempt after %v", reused, took)
		}
		if r := c.Send(ctx, tg, "msg_2", []byte(`{}`)); r.Verdict != Aborted {
			t.Errorf("reused %v: an attempt with an ended context: %+v, want aborted", reused, r)
		}
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (one per client)", n)
	}
}

// An endpoint that writes more than its answer (a second response, bytes
// after a 204, a body longer than its Content-Length) must not answer the
// next request on that connection, which may be another tenant's: the
// connection is retired, and the next request gets the endpoint's real
// answer (here 500) on a new one.
func TestTransportRetiresConnectionsWithLeftovers(t *testing.T) {
	const later = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	tests := []struct {
		name   string
		first  string        // the first request's answer
		after  time.Duration // then, this long after it
		extra  string        // this is written
		status int           // the first answer's status
	}{
		{"a second response 50 ms after the answer", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 50 * time.Millisecond, later, 200},
		{"bytes 50 ms after a 204", "HTTP/1.1 204 No Content\r\n\r\n", 50 * time.Millisecond, later, 204},
		{"a body longer than its Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + later, 0, "", 200},
		{"a 204 followed by a response", "HTTP/1.1 204 No Content\r\n\r\n" + later, 0, "", 204},
		{"a body longer than its Content-Length, the rest later", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 50 * time.Millisecond, "xx" + later, 200},
		// Past the 256 bytes of the connection's head buffer.
		{"a 600-byte head, then bytes", "HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("p", 560) + "\r\nContent-Length: 0\r\n\r\nxx", 0, "", 200},
		{"a 900-byte body, then a response", "HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n" + strings.Repeat("b", 900) + later, 0, "", 200},
		{"a 300-byte head, bytes 50 ms later", "HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("p", 260) + "\r\nContent-Length: 0\r\n\r\n", 50 * time.Millisecond, later, 200},
	}
	for _, scheme := range []string{"http", "https"} {
		for _, tt := range tests {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				cert, pool := selfSigned(t, nil)
				var conns atomic.Int32
				s := startRaw(t, func(s *rawServer, c net.Conn) {
					conns.Add(1)
					if scheme == "https" {
						c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
					}
					for s.readRequest(c) {
						if s.requests.Load() > 1 {
							io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
							continue
						}
						io.WriteString(c, tt.first)
						if tt.extra != "" {
							time.Sleep(tt.after)
							io.WriteString(c, tt.extra)
						}
					}
				})
				c := New(Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, TLSConfig: &tls.Config{RootCAs: pool}})
				t.Cleanup(c.Close)
				tenantA, _ := target(t, s.url(scheme)+"?tenant=a", nil)
				tenantB, _ := target(t, s.url(scheme)+"?tenant=b", nil)
				if r := c.Send(context.Background(), tenantA, "msg_1", []byte(`{}`)); r.Verdict != Delivered || r.Status != tt.status {
					t.Fatalf("first attempt: Send = %+v, want delivered with %d", r, tt.status)
				}
				time.Sleep(tt.after + 150*time.Millisecond) // the leftovers have arrived
				if r := c.Send(context.Background(), tenantB, "msg_2", []byte(`{}`)); r.Verdict != Retry || r.Status != 500 {
					t.Errorf("second attempt: Send = %+v, want the endpoint's 500, retried", r)
				}
				if n := conns.Load(); n != 2 {
					t.Errorf("%d connections, want 2 (the first retired)", n)
				}
			})
		}
	}
}

// Attempts held in flight at once to several hosts, then answered: the
// connections they leave idle are kept up to MaxIdleConnsPerHost per host
// and MaxIdleConns over all, and the others are closed.
func TestTransportIdleBounds(t *testing.T) {
	const hosts, perHost = 3, 4 // attempts held in flight to each host
	for _, tc := range []struct {
		name             string
		idlePerHost, all int
		wantAll          int // the bound over all hosts
		wantKept         int
	}{
		{"per host bound", 2, 0, 4096, 6},
		{"bound over all hosts", 4, 5, 5, 5},
		{"bound over all defaults to at least the per-host one", 8192, 0, 8192, 12},
		{"room for all", 4, 12, 12, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var held atomic.Int32
			gate := func(w http.ResponseWriter, r *http.Request) {
				if held.Add(1) == hosts*perHost {
					close(release)
				}
				select { // every attempt in flight at once, then all answered
				case <-release:
				case <-time.After(5 * time.Second):
					t.Error("not every attempt arrived in flight at once")
				}
				io.Copy(io.Discard, r.Body)
			}
			var servers []*counted
			for range hosts {
				servers = append(servers, newCounted(t, false, 0, gate))
			}
			c := New(Options{Timeout: 5 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/test",
				MaxIdleConnsPerHost: tc.idlePerHost, MaxIdleConns: tc.all})
			t.Cleanup(c.Close)
			if c.tr.maxIdleAll != tc.wantAll {
				t.Errorf("bound over all hosts %d, want %d", c.tr.maxIdleAll, tc.wantAll)
			}
			var wg sync.WaitGroup
			for _, s := range servers {
				tg, _ := target(t, s.URL+"/hook", nil)
				for range perHost {
					wg.Go(func() {
						if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
							t.Errorf("Send = %+v", r)
						}
					})
				}
			}
			wg.Wait()
			c.tr.mu.Lock()
			kept := c.tr.nIdle
			perKey := 0
			for _, cs := range c.tr.idle {
				perKey = max(perKey, len(cs))
			}
			c.tr.mu.Unlock()
			if kept != tc.wantKept {
				t.Errorf("%d idle connections kept, want %d", kept, tc.wantKept)
			}
			if perKey > tc.idlePerHost {
				t.Errorf("%d idle connections kept to one host, over the bound %d", perKey, tc.idlePerHost)
			}
			count := func() (conns, closed int) {
				for _, s := range servers {
					conns, closed = conns+int(s.conns.Load()), closed+int(s.closed.Load())
				}
				return conns, closed
			}
			testenv.Eventually(t, "the connections beyond the bounds to be closed", 5*time.Second, func() bool {
				_, closed := count()
				return closed >= hosts*perHost-tc.wantKept
			})
			if conns, closed := count(); conns != hosts*perHost || closed != hosts*perHost-tc.wantKept {
				t.Errorf("%d connections opened and %d closed, want %d and %d", conns, closed, hosts*perHost, hosts*perHost-tc.wantKept)
			}
		})
	}
}

// TestTransportOpenBound: connections in use and idle share MaxConns. A
// burst of answers keeps all its connections idle; a dial at the bound
// closes the one idle longest (to another host); with none idle, a dial
// goes beyond the bound, and that connection is closed once answered; a
// connection that fails to dial is not counted, nor one closed.
func TestTransportOpenBound(t *testing.T) {
	const bound = 4
	var held atomic.Int32
	var release sync.Map // path: chan struct{} the attempts to it wait for
	gate := func(w http.ResponseWriter, r *http.Request) {
		if ch, ok := release.Load(r.URL.Path); ok {
			held.Add(1)
			select {
			case <-ch.(chan struct{}):
			case <-time.After(5 * time.Second):
				t.Error("attempts held for 5 s")
			}
		}
		io.Copy(io.Discard, r.Body)
	}
	a, b := newCounted(t, false, 0, gate), newCounted(t, false, 0, gate)
	reg := prometheus.NewRegistry()
	c := New(Options{Timeout: 5 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/test",
		MaxIdleConnsPerHost: 16, MaxConns: bound, Registerer: reg})
	t.Cleanup(c.Close)
	send := func(s *counted, path string) {
		tg, _ := target(t, s.URL+path, nil)
		if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict != Delivered {
			t.Errorf("Send = %+v", r)
		}
	}
	state := func() (open, idleA, idleB int) {
		c.tr.mu.Lock()
		defer c.tr.mu.Unlock()
		for key, cs := range c.tr.idle {
			switch {
			case strings.HasSuffix(a.URL, key.host):
				idleA = len(cs)
			case strings.HasSuffix(b.URL, key.host):
				idleB = len(cs)
			}
		}
		return c.tr.nOpen, idleA, idleB
	}
	// burst sends n attempts to s at once, all in flight before any is
	// answered, then, before answering them, calls meanwhile.
	burst := func(s *counted, path string, n int, meanwhile func()) {
		ch := make(chan struct{})
		release.Store(path, ch)
		held.Store(0)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { send(s, path) })
		}
		testenv.Eventually(t, "every attempt in flight", 5*time.Second, func() bool { return held.Load() == int32(n) })
		meanwhile()
		close(ch)
		wg.Wait()
	}

	// The metrics say what state says, and count dials and evictions.
	wantMetrics := func(when string, inUse, idle, dials, evicted float64) {
		t.Helper()
		got := connMetrics(t, reg)
		want := map[string]float64{"in_use": inUse, "idle": idle, "dials": dials, "evicted": evicted}
		if !maps.Equal(got, want) {
			t.Errorf("%s: metrics %v, want %v", when, got, want)
		}
	}

	burst(a, "/burst", bound, func() {})
	if open, idleA, _ := state(); open != bound || idleA != bound {
		t.Fatalf("after a burst of %d: %d open, %d idle to A; want all kept", bound, open, idleA)
	}
	wantMetrics("after the burst to A", 0, bound, bound, 0)
	send(b, "/")
	send(b, "/") // on the connection the first one dialled
	if open, idleA, idleB := state(); open != bound || idleA != bound-1 || idleB != 1 {
		t.Errorf("after B's dial at the bound: %d open, %d idle to A, %d to B; want %d, %d, 1", open, idleA, idleB, bound, bound-1)
	}
	wantMetrics("after B's dial at the bound", 0, bound, bound+1, 1)
	testenv.Eventually(t, "A to see one connection closed", 5*time.Second, func() bool { return a.closed.Load() == 1 })
	if n := b.conns.Load(); n != 1 {
		t.Errorf("B saw %d connections, want 1", n)
	}

	// All in use: B's next connections go beyond the bound, and are closed
	// once answered.
	burst(a, "/all", bound, func() {
		if open, idleA, idleB := state(); open != bound || idleA != 0 || idleB != 0 {
			t.Errorf("%d attempts in flight: %d open, %d idle to A, %d to B; want %d, 0, 0", bound, open, idleA, idleB, bound)
		}
		// A's burst took its 3 idle connections and dialled one, closing
		// B's idle one.
		wantMetrics("every connection in use", bound, 0, bound+2, 2)
		var wg sync.WaitGroup
		wg.Go(func() { send(b, "/") })
		wg.Go(func() { send(b, "/") })
		wg.Wait()
		if open, _, idleB := state(); open != bound || idleB != 0 {
			t.Errorf("past the bound: %d open, %d idle to B after their answers; want %d, 0", open, idleB, bound)
		}
	})
	if n := b.conns.Load(); n != 3 {
		t.Errorf("B saw %d connections, want 3: 2 dialled past the bound", n)
	}
	// B's two went past the bound, closed once answered.
	wantMetrics("after the burst past the bound", 0, bound, bound+4, 4)
	if open, idleA, _ := state(); open != bound || idleA != bound {
		t.Errorf("after the burst: %d open, %d idle to A; want %d, %d", open, idleA, bound, bound)
	}

	// A failed dial is not counted open, but counted a dial (over the
	// bound, an idle connection was closed to make room for it first).
	before, _, _ := state()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	tg, _ := target(t, dead.URL, nil)
	if r := c.Send(context.Background(), tg, "msg_1", []byte(`{}`)); r.Verdict == Delivered {
		t.Fatalf("Send to a closed port = %+v", r)
	}
	if open, _, _ := state(); open != before-1 {
		t.Errorf("%d open after a failed dial, want %d", open, before-1)
	}
	wantMetrics("after a failed dial", 0, bound-1, bound+5, 5)
	c.Close()
	if open, _, _ := state(); open != 0 {
		t.Errorf("%d open after Close, want 0", open)
	}
}

// connMetrics reads the transport's connection metrics from reg: in_use
// and idle, dials and evicted.
func connMetrics(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "feedbackd_delivery_connections":
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			case "feedbackd_delivery_dials_total":
				got["dials"] = m.GetCounter().GetValue()
			case "feedbackd_delivery_connections_evicted_total":
				got["evicted"] = m.GetCounter().GetValue()
			}
		}
	}
	return got
}

// pipeConn is a connection counted open in tr, over a pipe closed with
// the test.
func pipeConn(t *testing.T, tr *transport) *conn {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	c := newConn(client, client)
	c.t = tr
	tr.mu.Lock()
	tr.nOpen++
	tr.mu.Unlock()
	return c
}

// TestOpenAtTheBoundCountsTheEvictedClosed: a dial at the bound counts the
// idle connection it evicts closed before its caller closes it, so that a
// connection put back meanwhile is not seen over the bound and evicted
// too.
func TestOpenAtTheBoundCountsTheEvictedClosed(t *testing.T) {
	tr := newTransport(nil, nil, 4, 4, 2)
	t.Cleanup(tr.close)
	idle, busy := pipeConn(t, tr), pipeConn(t, tr)
	tr.put(poolKey{host: "a"}, idle)

	evicted := tr.open() // a dial at the bound: 3 counted open, 1 idle
	if evicted != idle {
		t.Fatalf("open at the bound evicted %v, want the idle connection", evicted)
	}
	if inUse, nIdle, counts := tr.connStats(); inUse != 2 || nIdle != 0 || counts.evicted != 1 {
		t.Errorf("before the evicted connection is closed: %d in use, %d idle, %d evicted; want 2, 0, 1", inUse, nIdle, counts.evicted)
	}
	tr.put(poolKey{host: "b"}, busy) // an answer put back before the evicted one is closed
	evicted.close()
	if inUse, nIdle, counts := tr.connStats(); inUse != 1 || nIdle != 1 || counts.evicted != 1 {
		t.Errorf("after it is closed: %d in use, %d idle, %d evicted; want 1 (the dial's), 1 (the one put back), 1", inUse, nIdle, counts.evicted)
	}
}
