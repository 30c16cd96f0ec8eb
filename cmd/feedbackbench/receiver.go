package main

import (
	"bytes"
	"encoding/json"
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
}

// receiverMain is `feedbackbench receiver`: an HTTP endpoint in its own
// process that answers 200 after --latency, except under /slow/ where it
// answers after --slow-after. It prints its address on stdout.
func receiverMain(args []string) int {
	var latency, slowAfter time.Duration
	for i := 0; i+1 < len(args); i += 2 {
		d, err := time.ParseDuration(args[i+1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "receiver:", err)
			return 2
		}
		switch args[i] {
		case "--latency":
			latency = d
		case "--slow-after":
			slowAfter = d
		}
	}
	var mu sync.Mutex
	var st stats
	var lat []int64
	marker := []byte(`"requestId":"t`)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now().UnixNano()
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			mu.Lock()
			st.Slow++
			mu.Unlock()
			time.Sleep(slowAfter)
			return
		}
		if latency > 0 {
			time.Sleep(latency)
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
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		out := st
		l := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(l)
		if n := len(l); n > 0 {
			out.P50, out.P95, out.P99, out.Sample = l[n*50/100], l[n*95/100], l[min(n*99/100, n-1)], n
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /reset", func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		st, lat = stats{}, nil
		mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		return 1
	}
	return 0
}

func (e *env) stats() (stats, error) {
	var s stats
	resp, err := e.http.Get("http://" + e.receiver + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (e *env) reset() error {
	resp, err := e.http.Post("http://"+e.receiver+"/reset", "", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
