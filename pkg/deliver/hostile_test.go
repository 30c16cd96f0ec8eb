package deliver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/netguard"
)

// endpoint is a hostile server under test.
type endpoint struct {
	url      string
	tls      *tls.Config     // the client's; nil: system roots
	requests func() int32    // requests the server has read
	ended    <-chan struct{} // a connection's handler returned; nil: not known
}

// Every hostile behaviour ends within the attempt's Timeout (plus slack
// for a loaded machine), allocates far less than the server sends, gets the
// status the server sent (0 if none), and is judged by the status rules. No
// case reaches the server more than once: nothing is followed or retried
// within the attempt.
func TestHostileEndpoints(t *testing.T) {
	const (
		timeout  = time.Second
		slack    = 3 * time.Second
		maxAlloc = 16 << 20 // the endless bodies offer 1 GiB
	)
	chunk := []byte(strings.Repeat("x", 32<<10))
	yesterday := time.Now().Add(-24 * time.Hour)
	tests := []struct {
		name     string
		serve    func(t *testing.T) endpoint
		verdict  Verdict
		status   int
		class    string
		requests int32
	}{
		// Slow answers: the deadline covers the head and the body.
		{"status line and headers trickle", answer(func(c net.Conn) { trickle(c, "", "HTTP/1.1 200 OK\r\nX-Slow: yes\r\n") }),
			Retry, 0, classTimeout, 1},
		{"200 then the body trickles: the status is the answer", answer(func(c net.Conn) {
			trickle(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", "x")
		}), Delivered, 200, "", 1},
		{"503 then the body trickles", answer(func(c net.Conn) {
			trickle(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000000\r\n\r\n", "x")
		}), Retry, 503, "http_503", 1},

		// Big answers: cut at MaxResponseBytes, or at 64 KiB of headers.
		{"200 with a 1 GiB body", answer(func(c net.Conn) {
			endless(c, "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n", chunk)
		}), Delivered, 200, "", 1},
		{"500 with an endless chunked body", answer(func(c net.Conn) {
			endless(c, "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n", []byte("8000\r\n"+string(chunk)+"\r\n"))
		}), Retry, 500, "http_500", 1},
		{"endless headers", answer(func(c net.Conn) { endless(c, "HTTP/1.1 200 OK\r\n", []byte("X-Filler: xxxxxxxxxxxxxxxxxxxxxxxx\r\n")) }),
			Retry, 0, classBadResponse, 1},
		{"endless 1xx responses", answer(func(c net.Conn) { endless(c, "", []byte("HTTP/1.1 102 Processing\r\n\r\n")) }),
			Retry, 0, classBadResponse, 1},
		{"HTTP/2 server, 200 with a 1 GiB body (spoken over HTTP/1.1)", h2(func(w http.ResponseWriter, r *http.Request) {
			for n := 0; n < 1<<30; n += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}), Delivered, 200, "", 1},

		// Redirects are answers, never followed.
		{"redirect to itself", answer(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 302 Found\r\nLocation: /hook\r\nContent-Length: 0\r\n\r\n")
		}), Reject, 302, "http_302", 1},

		// TLS failures: the request is never sent.
		{"self-signed certificate", tlsServer(false, nil, nil), Retry, 0, classTLSCertificate, 0},
		{"expired certificate", tlsServer(true, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = yesterday.Add(-time.Hour), yesterday }, nil),
			Retry, 0, classTLSCertificate, 0},
		{"certificate for another name", tlsServer(true, func(c *x509.Certificate) { c.IPAddresses, c.DNSNames = nil, []string{"other.example"} }, nil),
			Retry, 0, classTLSCertificate, 0},
		{"plain HTTP on the TLS port", func(t *testing.T) endpoint {
			e := httpServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			e.url = strings.Replace(e.url, "http://", "https://", 1)
			return e
		}, Retry, 0, classTLSHandshake, 0},
		{"garbage on the TLS port", raw("https", func(c net.Conn) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
			_, _ = io.Copy(io.Discard, c)
		}), Retry, 0, classTLSHandshake, 0},
		{"TLS alert: no common version", tlsServer(true, nil, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 }),
			Retry, 0, classTLSHandshake, 0},
		{"TLS alert: client certificate required", tlsServer(true, nil, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert }),
			Retry, 0, classTLSHandshake, 0},
		{"TLS handshake never answered", raw("https", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }),
			Retry, 0, classTimeout, 0},

		// Connections that end early.
		{"reset before answering", answer(reset), Retry, 0, classReset, 1},
		{"reset on accept", raw("http", reset), Retry, 0, classReset, 0},
		{"closed before answering", answer(func(net.Conn) {}), Retry, 0, classClosed, 1},
		{"closed after the status line", answer(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\n") }),
			Retry, 0, classClosed, 1},
		{"200 then reset mid-body: the status is the answer", answer(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
			time.Sleep(50 * time.Millisecond) // let the head arrive before the RST
			reset(c)
		}), Delivered, 200, "", 1},
		{"500 then closed mid-body", answer(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\nabc")
		}), Retry, 500, "http_500", 1},
		{"HTTP/2 server aborts before answering (spoken over HTTP/1.1)", h2(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }),
			Retry, 0, classClosed, 1},

		// Answers that are not HTTP.
		{"200 with invalid chunked encoding: the status is the answer", answer(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
		}), Delivered, 200, "", 1},
		{"500 with invalid chunked encoding", answer(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n-1\r\n")
		}), Retry, 500, "http_500", 1},
		{"malformed status line", answer(func(c net.Conn) { io.WriteString(c, "garbage\r\n\r\n") }),
			Retry, 0, classBadResponse, 1},
		{"status line cut short", answer(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 2") }),
			Retry, 0, classBadResponse, 1},
		{"malformed status code", answer(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 2OO OK\r\n\r\n") }),
			Retry, 0, classBadResponse, 1},
		{"malformed header line", answer(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nno colon\r\n\r\n") }),
			Retry, 0, classBadResponse, 1},
		{"invalid Content-Length", answer(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: -7\r\n\r\n") }),
			Retry, 0, classBadResponse, 1},
	}
	goroutines := runtime.NumGoroutine()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.serve(t)
			c := New(Options{Timeout: timeout, MaxResponseBytes: 4 << 10, Guard: &netguard.Guard{AllowPrivate: true}, TLSConfig: e.tls})
			t.Cleanup(c.Close)
			tg, _ := target(t, e.url, nil)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			r := c.Send(context.Background(), tg, "msg_1", []byte(`{"requestId":"r"}`))
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if took > timeout+slack {
				t.Errorf("took %v, want at most %v", took, timeout+slack)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAlloc {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
			if r.Verdict != tt.verdict || r.Status != tt.status || r.Class != tt.class {
				t.Errorf("Send = %+v, want verdict %d status %d class %q", r, tt.verdict, tt.status, tt.class)
			}
			if n := e.requests(); n != tt.requests {
				t.Errorf("the server read %d requests, want %d", n, tt.requests)
			}
			if e.ended != nil { // the client let go of the connection: the server is not left writing or waiting
				select {
				case <-e.ended:
				case <-time.After(slack):
					t.Error("the connection is still open")
				}
			}
		})
	}
	// Every connection was closed or handed back: nothing is left running.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
}

// raw serves scheme on a TCP listener whose connections handle gets as soon
// as they are accepted.
func raw(scheme string, handle func(c net.Conn)) func(t *testing.T) endpoint {
	return func(t *testing.T) endpoint {
		s := startRaw(t, func(_ *rawServer, c net.Conn) { handle(c) })
		return endpoint{url: s.url(scheme), requests: s.requests.Load, ended: s.ended}
	}
}

// answer serves plain HTTP on a TCP listener: it reads one request, then
// hands the connection to handle, and closes it when handle returns.
func answer(handle func(c net.Conn)) func(t *testing.T) endpoint {
	return func(t *testing.T) endpoint {
		s := startRaw(t, func(s *rawServer, c net.Conn) {
			if s.readRequest(c) {
				handle(c)
			}
		})
		return endpoint{url: s.url("http"), requests: s.requests.Load, ended: s.ended}
	}
}

// httpServer serves h with net/http over plain HTTP.
func httpServer(t *testing.T, h http.Handler) endpoint {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(count(&n, h))
	t.Cleanup(srv.Close)
	return endpoint{url: srv.URL + "/hook", requests: n.Load}
}

// h2 serves h with net/http, HTTP/2 enabled, with a certificate the
// client trusts. The client offers HTTP/1.1 only, so that is what is spoken.
func h2(h http.HandlerFunc) func(t *testing.T) endpoint {
	return func(t *testing.T) endpoint {
		var n atomic.Int32
		srv := httptest.NewUnstartedServer(count(&n, h))
		srv.EnableHTTP2 = true
		srv.Config.ErrorLog = quietLog()
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return endpoint{url: srv.URL + "/hook", tls: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone(), requests: n.Load}
	}
}

// tlsServer serves HTTPS with a fresh self-signed certificate for
// 127.0.0.1, changed by cert if not nil, that the client trusts if trusted;
// server, if not nil, changes the server's TLS configuration.
func tlsServer(trusted bool, cert func(*x509.Certificate), server func(*tls.Config)) func(t *testing.T) endpoint {
	return func(t *testing.T) endpoint {
		c, pool := selfSigned(t, cert)
		if !trusted {
			pool = x509.NewCertPool()
		}
		var n atomic.Int32
		srv := httptest.NewUnstartedServer(count(&n, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{c}}
		if server != nil {
			server(srv.TLS)
		}
		srv.Config.ErrorLog = quietLog()
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return endpoint{url: srv.URL + "/hook", tls: &tls.Config{RootCAs: pool}, requests: n.Load}
	}
}

// count counts the requests h gets in n.
func count(n *atomic.Int32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// quietLog drops the server's complaints about the handshakes we fail on
// purpose.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// rawServer is a TCP listener on loopback whose connections are handled by
// handle, for behaviour net/http's server will not produce. Cleanup closes
// the listener and every connection and waits for the handlers.
type rawServer struct {
	ln       net.Listener
	requests atomic.Int32  // requests read by readRequest
	ended    chan struct{} // one value per handler that returned
	handled  sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startRaw(t *testing.T, handle func(s *rawServer, c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, ended: make(chan struct{}, 64)}
	s.handled.Add(1)
	go func() {
		defer s.handled.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.handled.Add(1)
			go func() {
				defer s.handled.Done()
				handle(s, c)
				c.Close()
				select {
				case s.ended <- struct{}{}:
				default:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.handled.Wait()
	})
	return s
}

func (s *rawServer) url(scheme string) string { return scheme + "://" + s.ln.Addr().String() + "/hook" }

// readRequest reads one whole request, so that closing the connection
// afterwards sends a FIN (or the RST we ask for), not an RST for unread data.
func (s *rawServer) readRequest(c net.Conn) bool {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, req.Body)
	s.requests.Add(1)
	return err == nil
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// trickle writes prefix, then one byte of body every 100ms until the
// client goes away.
func trickle(c net.Conn, prefix, body string) {
	if _, err := io.WriteString(c, prefix); err != nil {
		return
	}
	for i := 0; ; i = (i + 1) % len(body) {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(c, body[i:i+1]); err != nil {
			return
		}
	}
}

// endless writes head, then chunk over and over (1 GiB at most) until the
// client goes away. chunk is allocated once by the caller: the test counts
// allocations.
func endless(c net.Conn, head string, chunk []byte) {
	if _, err := io.WriteString(c, head); err != nil {
		return
	}
	for n := 0; n < 1<<30; n += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// selfSigned returns a fresh CA certificate for 127.0.0.1, valid now
// unless edit changes it, and a pool that trusts it.
func selfSigned(t *testing.T, edit func(*x509.Certificate)) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hostile"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
