package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// stats is what the receiver saw since its last reset.
type stats struct {
	Count int64 `json:"count"` // requests from the healthy tenants
	Bad   int64 `json:"bad"`   // requests to the slow or dead tenant's endpoint
	// BadAnswered is how many distinct events (Webhook-Id) the slow or
	// dead tenant's endpoint has answered since the receiver started: not
	// reset, so that the bench can wait for its retries to drain.
	BadAnswered int64 `json:"bad_answered"`
	First       int64 `json:"first"`  // unix ns of the first healthy request
	Last        int64 `json:"last"`   // unix ns of the last healthy request
	P50         int64 `json:"p50_ns"` // latency from produce time (in requestId) to arrival
	P95         int64 `json:"p95_ns"`
	P99         int64 `json:"p99_ns"`
	Sample      int   `json:"latency_samples"`
	// Handshakes are the TLS handshakes (one per new connection), Resumed
	// those of them that resumed a session.
	Handshakes int64 `json:"tls_handshakes"`
	Resumed    int64 `json:"tls_resumed"`
	Open       int   `json:"open_connections"` // to the endpoints, now
}

// receiverAddrs is the receiver's first line on stdout: where its
// endpoints listen, and its control API (stats, reset, drain; plain HTTP).
type receiverAddrs struct {
	Control   string   `json:"control"`
	Endpoints []string `json:"endpoints"`
}

// receiverMain is `feedbackbench receiver`: HTTP endpoints in their own
// process, one per --hosts address, that answer 200 after --latency,
// except under /slow/ where they answer after --slow-after; over TLS with
// the certificate in --tls-dir if given. With --dead-port, it also serves
// the dead tenant's endpoint on that port of 127.0.0.1, except that while
// the tenant is bad nothing listens there. The tenant is bad (slow: waits
// --slow-after; dead: refuses connections) after POST /bad?on=true, and
// healthy again (answers at once, requests counted apart from the other
// tenants') after POST /bad?on=false, the start. It prints its
// receiverAddrs as JSON on stdout.
func receiverMain(args []string) int {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	latency := fs.Duration("latency", 0, "delay before answering")
	slowAfter := fs.Duration("slow-after", 10*time.Second, "delay before answering under /slow/")
	hosts := fs.Int("hosts", 1, "listen on this many loopback addresses (hostIPs)")
	tlsDir := fs.String("tls-dir", "", "serve HTTPS with the certificate in this directory")
	deadPort := fs.Int("dead-port", 0, "serve the dead tenant's endpoint on this port of 127.0.0.1 while it is healthy")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var mu sync.Mutex
	var st stats
	var lat []int64
	var conns connTracker
	var bad atomic.Bool                  // the slow or dead tenant is bad now
	badAnswered := map[string]struct{}{} // its events answered, by Webhook-Id
	marker := []byte(`"requestId":"t`)
	badTenant := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		st.Bad++
		mu.Unlock()
		if bad.Load() {
			time.Sleep(*slowAfter)
		}
		if r.Context().Err() != nil {
			return // feedbackd gave up (its timeout), or the dead endpoint closed: not answered
		}
		mu.Lock()
		badAnswered[r.Header.Get("Webhook-Id")] = struct{}{}
		mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			badTenant(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		now := time.Now().UnixNano()
		if *latency > 0 {
			time.Sleep(*latency)
		}
		var sent int64
		if i := bytes.Index(body, marker); i >= 0 {
			rest := body[i+len(marker):]
			if j := bytes.IndexByte(rest, '"'); j > 0 {
				sent, _ = strconv.ParseInt(string(rest[:j]), 10, 64)
			}
		}
		mu.Lock()
		st.Count++
		if st.First == 0 {
			st.First = now
		}
		st.Last = now
		if sent > 0 {
			lat = append(lat, now-sent)
		}
		mu.Unlock()
	})
	control := http.NewServeMux()
	control.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		out := st
		out.BadAnswered = int64(len(badAnswered))
		l := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(l)
		if n := len(l); n > 0 {
			out.P50, out.P95, out.P99, out.Sample = l[n*50/100], l[n*95/100], l[min(n*99/100, n-1)], n
		}
		out.Open = conns.open()
		_ = json.NewEncoder(w).Encode(out)
	})
	control.HandleFunc("POST /reset", func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		st, lat = stats{}, nil
		mu.Unlock()
	})
	var tlsConfig *tls.Config // with --tls-dir, set before anything listens
	var dead struct {
		sync.Mutex
		srv *http.Server // serving while the dead tenant is healthy
	}
	// setBad makes the slow or dead tenant bad or healthy.
	setBad := func(on bool) error {
		bad.Store(on)
		if *deadPort == 0 {
			return nil
		}
		dead.Lock()
		defer dead.Unlock()
		switch {
		case on && dead.srv != nil:
			err := dead.srv.Close() // its connections too: refused from now on
			dead.srv = nil
			return err
		case !on && dead.srv == nil:
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*deadPort)))
			if err != nil {
				return err
			}
			if tlsConfig != nil {
				ln = tls.NewListener(ln, tlsConfig)
			}
			dead.srv = &http.Server{Handler: http.HandlerFunc(badTenant), ReadHeaderTimeout: 10 * time.Second}
			go func(srv *http.Server) { _ = srv.Serve(ln) }(dead.srv)
		}
		return nil
	}
	control.HandleFunc("POST /bad", func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err == nil {
			err = setBad(on)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	control.HandleFunc("POST /drain", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{"closed": conns.closeIdle(), "open": conns.open()})
	})
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "receiver:", err); return 1 }
	if *tlsDir != "" {
		var err error
		tlsConfig, err = serverConfig(*tlsDir, func(resumed bool) {
			mu.Lock()
			st.Handshakes++
			if resumed {
				st.Resumed++
			}
			mu.Unlock()
		})
		if err != nil {
			return fail(err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnState: conns.track}
	var addrs receiverAddrs
	var lns []net.Listener
	for _, ip := range hostIPs(*hosts) {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			return fail(fmt.Errorf("%w (--hosts above 1 needs 127.0.0.0/8 on the loopback interface, as Linux has)", err))
		}
		addrs.Endpoints = append(addrs.Endpoints, ln.Addr().String())
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		lns = append(lns, ln)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	addrs.Control = cln.Addr().String()
	if err := setBad(false); err != nil {
		return fail(fmt.Errorf("--dead-port: %w", err))
	}
	line, _ := json.Marshal(addrs)
	fmt.Println(string(line))
	for _, ln := range lns {
		go func() { _ = srv.Serve(ln) }()
	}
	if err := (&http.Server{Handler: control, ReadHeaderTimeout: 10 * time.Second}).Serve(cln); err != nil {
		return fail(err)
	}
	return 0
}

// connTracker knows the endpoints' connections and their states, to close
// the idle ones between phases. It is safe for concurrent use.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

// track is the server's ConnState hook.
func (t *connTracker) track(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns = map[net.Conn]http.ConnState{}
	}
	if s == http.StateClosed || s == http.StateHijacked {
		delete(t.conns, c)
		return
	}
	t.conns[c] = s
}

// closeIdle closes the connections that are between requests, and returns
// how many. A client sees an idle connection closed by the server as
// keep-alive clients do (feedbackd checks before each reuse).
func (t *connTracker) closeIdle() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c, s := range t.conns {
		if s == http.StateIdle {
			_ = c.Close()
			delete(t.conns, c)
			n++
		}
	}
	return n
}

func (t *connTracker) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func (e *env) stats() (stats, error) {
	var s stats
	resp, err := e.http.Get("http://" + e.control + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (e *env) reset() error {
	resp, err := e.http.Post("http://"+e.control+"/reset", "", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// setBad makes the slow or dead tenant bad (slow: answers after 10 s;
// dead: refuses connections) or healthy (answers at once).
func (e *env) setBad(on bool) error {
	resp, err := e.http.Post(fmt.Sprintf("http://%s/bad?on=%t", e.control, on), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("receiver: /bad: %s", bytes.TrimSpace(b))
	}
	return nil
}

// drain asks the receiver to close its idle connections (the last phase's
// client's, feedbackd's between its rounds), so that file descriptors do
// not pile up across phases; connections in use (the slow tenant's) stay.
func (e *env) drain() error {
	resp, err := e.http.Post("http://"+e.control+"/drain", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var d struct{ Closed, Open int }
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return err
	}
	if d.Closed > 0 || d.Open > 0 {
		logf("receiver: %d idle connections closed, %d open", d.Closed, d.Open)
	}
	return nil
}
