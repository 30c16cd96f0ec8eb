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
	"time"
)

// stats is what the receiver saw since its last reset.
type stats struct {
	Count  int64 `json:"count"`  // requests from the healthy tenants
	Slow   int64 `json:"slow"`   // requests to the slow tenant's path
	First  int64 `json:"first"`  // unix ns of the first healthy request
	Last   int64 `json:"last"`   // unix ns of the last healthy request
	P50    int64 `json:"p50_ns"` // latency from produce time (in requestId) to arrival
	P95    int64 `json:"p95_ns"`
	P99    int64 `json:"p99_ns"`
	Sample int   `json:"latency_samples"`
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
// the certificate in --tls-dir if given. It prints its receiverAddrs as
// JSON on stdout.
func receiverMain(args []string) int {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	latency := fs.Duration("latency", 0, "delay before answering")
	slowAfter := fs.Duration("slow-after", 10*time.Second, "delay before answering under /slow/")
	hosts := fs.Int("hosts", 1, "listen on this many loopback addresses (hostIPs)")
	tlsDir := fs.String("tls-dir", "", "serve HTTPS with the certificate in this directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var mu sync.Mutex
	var st stats
	var lat []int64
	var conns connTracker
	marker := []byte(`"requestId":"t`)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now().UnixNano()
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			mu.Lock()
			st.Slow++
			mu.Unlock()
			time.Sleep(*slowAfter)
			return
		}
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
	control.HandleFunc("POST /drain", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{"closed": conns.closeIdle(), "open": conns.open()})
	})
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "receiver:", err); return 1 }
	var tlsConfig *tls.Config
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
