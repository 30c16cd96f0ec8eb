package deliver

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/netguard"
)

// Start calls done once: before it returns when the answer comes within
// the brief wait, after it (on its own goroutine) when the answer is slower.
// Either way the attempt is judged as Send judges it, a body that trickles
// after the head is read whole (the brief wait's deadline is gone), a
// cancellation or the attempt's timeout during either wait ends it, and
// the connection, TLS or not, carries the next attempt.
func TestStart(t *testing.T) {
	for _, tt := range []struct {
		name     string
		handler  func(w http.ResponseWriter, r *http.Request)
		cancelAt time.Duration // 0: never
		timeout  time.Duration // the attempt's; 0: 2 s
		quick    time.Duration // the brief wait; 0: quickAnswer
		sync     string        // done before Start returns: yes, no, either
		verdict  Verdict
		class    string
		response string
		newConns int32 // for two attempts
	}{
		{name: "at once", handler: answerAfter(0, ""), quick: time.Minute, sync: "yes", verdict: Delivered, newConns: 1},
		{name: "slow", handler: answerAfter(60*time.Millisecond, "ok"), sync: "no", verdict: Delivered, response: "ok", newConns: 1},
		{name: "slow 503", handler: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(30 * time.Millisecond)
			w.WriteHeader(http.StatusServiceUnavailable)
		}, sync: "no", verdict: Retry, class: "http_503", newConns: 1},
		{name: "head at once, body trickled", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("first "))
			w.(http.Flusher).Flush()
			time.Sleep(3 * quickAnswer)
			_, _ = w.Write([]byte("and last"))
		}, sync: "either", verdict: Delivered, response: "first and last", newConns: 1},
		{name: "cancelled while waiting", handler: hang, cancelAt: 50 * time.Millisecond, sync: "no", verdict: Aborted, class: classCanceled, newConns: 2},
		{name: "cancelled in the brief wait", handler: hang, cancelAt: 20 * time.Millisecond, quick: time.Minute, sync: "yes", verdict: Aborted, class: classCanceled, newConns: 2},
		{name: "timed out while waiting", handler: hang, timeout: 100 * time.Millisecond, sync: "no", verdict: Retry, class: classTimeout, newConns: 2},
	} {
		for _, scheme := range []string{"http", "https"} {
			t.Run(tt.name+"/"+scheme, func(t *testing.T) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(tt.handler))
				var conns atomic.Int32
				srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conns.Add(1)
					}
				}
				opts := Options{Timeout: 2 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, ResponseBytes: 64}
				if tt.timeout > 0 {
					opts.Timeout = tt.timeout
				}
				if scheme == "https" {
					srv.StartTLS()
					opts.TLSConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				} else {
					srv.Start()
				}
				defer srv.Close()
				c := New(opts)
				defer c.Close()
				if tt.quick > 0 {
					c.quick = tt.quick
				}
				tg, _ := target(t, srv.URL, nil)
				for attempt := range 2 {
					ctx, cancel := context.WithCancel(context.Background())
					if tt.cancelAt > 0 {
						time.AfterFunc(tt.cancelAt, cancel)
					}
					var returned, calls atomic.Int32
					results := make(chan Result, 2)
					var doneBeforeReturn bool
					c.Start(ctx, tg, "id", []byte(`{}`), func(r Result) {
						if calls.Add(1) == 1 {
							doneBeforeReturn = returned.Load() == 0
						}
						results <- r
					})
					returned.Store(1)
					r := <-results
					cancel()
					time.Sleep(10 * time.Millisecond)
					if n := calls.Load(); n != 1 {
						t.Fatalf("attempt %d: done called %d times", attempt, n)
					}
					if want := tt.sync == "yes"; tt.sync != "either" && doneBeforeReturn != want {
						t.Errorf("attempt %d: done before Start returned: %v, want %v", attempt, doneBeforeReturn, want)
					}
					if r.Verdict != tt.verdict || r.Class != tt.class || string(r.Response) != tt.response {
						t.Fatalf("attempt %d: %+v (response %q), want verdict %d class %q response %q", attempt, r, r.Response, tt.verdict, tt.class, tt.response)
					}
				}
				if n := conns.Load(); n != tt.newConns {
					t.Errorf("two attempts opened %d connections, want %d", n, tt.newConns)
				}
			})
		}
	}
}

// answerAfter answers 200 with body after d.
func answerAfter(d time.Duration, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		_, _ = w.Write([]byte(body))
	}
}
