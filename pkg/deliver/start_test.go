package deliver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/netguard"
)

// Start calls done once: before it returns when the answer comes within
// the brief wait, after it (on its own goroutine) when the answer is
// slower. Either way the attempt is judged as Send judges it, a body that
// trickles after the head is read whole (the brief wait's deadline is
// gone), a cancellation or the attempt's timeout in either wait ends it,
// and the connection, TLS or not, carries the next attempt.
//
// The slow endpoints answer only once Start has returned (gate), and the
// cancellations are made then: what happens after the brief wait does not
// depend on the machine's speed.
func TestStart(t *testing.T) {
	const quick = 20 * time.Millisecond
	for _, tt := range []struct {
		name     string
		handler  func(gate <-chan struct{}) http.HandlerFunc
		cancel   bool          // once Start has returned
		cancelAt time.Duration // after Start is called
		timeout  time.Duration // the attempt's; 0: 2 s
		quick    time.Duration // the brief wait; 0: quick
		sync     string        // done before Start returns: yes, no, either
		verdict  Verdict
		class    string
		response string
		newConns int32 // for two attempts
	}{
		{name: "at once", handler: answering(http.StatusOK, ""), quick: time.Second, sync: "yes", verdict: Delivered, newConns: 1},
		{name: "slow", handler: gated(http.StatusOK, "ok"), sync: "no", verdict: Delivered, response: "ok", newConns: 1},
		{name: "slow 503", handler: gated(http.StatusServiceUnavailable, ""), sync: "no", verdict: Retry, class: "http_503", newConns: 1},
		{name: "head at once, body trickled", handler: func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("first "))
				w.(http.Flusher).Flush()
				time.Sleep(3 * quick)
				_, _ = w.Write([]byte("and last"))
			}
		}, sync: "either", verdict: Delivered, response: "first and last", newConns: 1},
		{name: "cancelled while waiting", handler: hanging, cancel: true, sync: "no", verdict: Aborted, class: classCanceled, newConns: 2},
		{name: "cancelled in the brief wait", handler: hanging, cancelAt: 50 * time.Millisecond, quick: time.Second, sync: "yes", verdict: Aborted, class: classCanceled, newConns: 2},
		{name: "timed out while waiting", handler: hanging, timeout: 300 * time.Millisecond, sync: "either", verdict: Retry, class: classTimeout, newConns: 2},
	} {
		for _, scheme := range []string{"http", "https"} {
			t.Run(tt.name+"/"+scheme, func(t *testing.T) {
				gate := make(chan struct{}, 2)
				srv := httptest.NewUnstartedServer(tt.handler(gate))
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
				c.quick = quick
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
					gate <- struct{}{}
					if tt.cancel {
						cancel()
					}
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

// answering answers status with body at once.
func answering(status int, body string) func(<-chan struct{}) http.HandlerFunc {
	return func(<-chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
}

// gated answers status with body once the test lets it (a value on gate).
func gated(status int, body string) func(<-chan struct{}) http.HandlerFunc {
	return func(gate <-chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			<-gate
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
}

// hanging never answers (see hang).
func hanging(<-chan struct{}) http.HandlerFunc { return hang }

// A request sent again within the attempt (here with a new OAuth2 token,
// the first one refused at once) is waited for as the first one was: its
// slow answer after Start has returned, not on the caller's goroutine.
func TestStartWaitsForTheRenewedTokensAnswerApart(t *testing.T) {
	var tokens atomic.Int32
	tokenSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":3600}`, tokens.Add(1))
	}))
	defer tokenSrv.Close()
	gate := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		<-gate
	}))
	defer srv.Close()
	c := New(Options{Timeout: 5 * time.Second, Guard: &netguard.Guard{AllowPrivate: true},
		TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()})
	defer c.Close()
	c.quick = 200 * time.Millisecond
	tg, _ := target(t, srv.URL, nil)
	tg.OAuth2 = endpointauth.NewOAuth2("cfg", tokenSrv.URL+"/token", "client", "secret", "", "")
	var returned atomic.Bool
	results := make(chan Result, 1)
	var doneBeforeReturn bool
	c.Start(context.Background(), tg, "id", []byte(`{}`), func(r Result) {
		doneBeforeReturn = !returned.Load()
		results <- r
	})
	returned.Store(true)
	gate <- struct{}{}
	if r := <-results; r.Verdict != Delivered || doneBeforeReturn || tokens.Load() != 2 {
		t.Fatalf("result %+v, done before Start returned: %v, %d tokens; want Delivered after it returned, 2 tokens", r, doneBeforeReturn, tokens.Load())
	}
}

// A connection whose last answer came slowFactor times the brief wait
// after the request is not waited on briefly: Start returns at once (here
// the brief wait is a minute, and the answer is held until Start has
// returned). An answer that then comes sooner makes the next attempt on it
// wait again: done before Start returns. One later than the brief wait but
// sooner than that does not mark it slow.
func TestStartSkipsTheBriefWaitAfterASlowAnswer(t *testing.T) {
	var hold atomic.Bool
	gate, ended := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() {
			select {
			case <-gate:
			case <-ended: // a failed test's held answer: srv.Close waits for it
			}
		}
	}))
	defer srv.Close()
	defer close(ended)
	c := New(Options{Timeout: 2 * time.Minute, Guard: &netguard.Guard{AllowPrivate: true}})
	defer c.Close()
	tg, _ := target(t, srv.URL, nil)
	// start makes an attempt on a goroutine of its own and reports whether
	// done came before Start returned, and the result.
	start := func(attempt string, holdFor time.Duration) (doneBeforeReturn bool, r Result) {
		t.Helper()
		var returned atomic.Bool
		results := make(chan Result, 1)
		startReturned := make(chan struct{})
		go func() {
			c.Start(context.Background(), tg, "id", []byte(`{}`), func(r Result) {
				doneBeforeReturn = !returned.Load()
				results <- r
			})
			returned.Store(true)
			close(startReturned)
		}()
		select {
		case <-startReturned:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Start did not return in 10 s: it waits for the held answer", attempt)
		}
		if hold.Load() {
			time.Sleep(holdFor)
			gate <- struct{}{}
		}
		if r = <-results; r.Verdict != Delivered {
			t.Fatalf("%s: %+v", attempt, r)
		}
		return doneBeforeReturn, r
	}

	// Later than the brief wait (Start returns after it), well before
	// slowFactor times it: the next answer is waited for briefly.
	c.quick = 200 * time.Millisecond
	hold.Store(true)
	start("an answer after the brief wait", 0)
	c.quick = time.Minute
	hold.Store(false)
	if doneFirst, _ := start("the attempt after it", 0); !doneFirst {
		t.Error("the attempt after an answer later than the brief wait but not slow: done after Start returned, want before")
	}
	c.quick = 20 * time.Millisecond
	hold.Store(true)
	start("a slow answer", slowFactor*20*time.Millisecond)
	c.quick = time.Minute
	if doneFirst, _ := start("the next attempt, held", 0); doneFirst {
		t.Error("the attempt after a slow answer: done before Start returned")
	}
	hold.Store(false)
	if doneFirst, _ := start("an answer at once", 0); !doneFirst {
		t.Error("the attempt after an answer within the brief wait: done after Start returned, want before")
	}
}
