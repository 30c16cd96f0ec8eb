package deliver

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestMain(m *testing.M) {
	testenv.ServeHoldReceiver()
	os.Exit(m.Run())
}

// BenchmarkInFlight measures what a delivery costs while it waits for a
// slow endpoint's answer (B/in-flight: live heap and goroutine stacks of
// this process, per attempt, with the attempt's goroutine) and what a
// connection costs once idle in the pool after it (B/idle-conn). The
// receiver (testenv.ServeHoldReceiver) runs in a process of its own and holds every
// request until all n have arrived. One iteration is n attempts, made with
// Send (the attempt's goroutine waits for the answer: that of a caller as
// deep as the bench's, shallower than the pipeline's) or with Start (as the
// pipeline makes them: 64 callers make them all, each attempt waited for
// on a goroutine of Start's once quickAnswer has passed).
func BenchmarkInFlight(b *testing.B) {
	for _, run := range []struct{ scheme, call string }{{"http", "Send"}, {"http", "Start"}, {"https", "Send"}, {"https", "Start"}} {
		scheme := run.scheme
		b.Run(scheme+"/"+run.call, func(b *testing.B) {
			const n = 2048
			recv := testenv.StartHoldReceiver(b, scheme == "https")
			opts := Options{Timeout: time.Minute, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: n}
			if scheme == "https" {
				// httptest's certificate is the same in every process.
				ts := httptest.NewTLSServer(http.NotFoundHandler())
				opts.TLSConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				ts.Close()
				opts.TLSConfig.MinVersion = tls.VersionTLS12
			}
			tg, _ := target(&testing.T{}, recv.URL, map[string]string{"X-Tenant": "bench"})
			body := make([]byte, 700)
			var inflight, idle, stack float64
			b.ResetTimer()
			for range b.N {
				c := New(opts) // each round dials n connections afresh
				before, stack0 := testenv.LiveBytes(), testenv.StackBytes()
				var wg sync.WaitGroup
				check := func(r Result) {
					if r.Verdict != Delivered {
						b.Errorf("verdict %v class %q", r.Verdict, r.Class)
					}
				}
				if run.call == "Send" {
					for range n {
						wg.Go(func() { check(c.Send(context.Background(), tg, "msg_2b6c1f0e9d8a", body)) })
					}
				} else {
					// Callers take turns, as the pipeline's workers do;
					// each waits quickAnswer before Start returns.
					wg.Add(n)
					var callers sync.WaitGroup
					for range 64 {
						callers.Go(func() {
							for range n / 64 {
								c.Start(context.Background(), tg, "msg_2b6c1f0e9d8a", body, func(r Result) { check(r); wg.Done() })
							}
						})
					}
					callers.Wait()
				}
				recv.Arrived(n)
				held, stack1 := testenv.LiveBytes(), testenv.StackBytes()
				recv.Release()
				wg.Wait()
				after := testenv.LiveBytes()
				inflight += float64(held-before) / n
				stack += float64(stack1-stack0) / n
				idle += float64(after-before) / n
				c.Close()
			}
			b.ReportMetric(inflight/float64(b.N), "B/in-flight")
			b.ReportMetric(idle/float64(b.N), "B/idle-conn")
			b.ReportMetric(stack/float64(b.N), "stack-B/in-flight") // of B/in-flight
		})
	}
}
