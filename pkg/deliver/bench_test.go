package deliver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// BenchmarkSend is one attempt against a loopback receiver that answers 200
// at once, from concurrent goroutines as the pipeline sends: signing,
// request building, the HTTP exchange and judging. The receiver runs in
// the same process, so its allocations are counted too.
func BenchmarkSend(b *testing.B) {
	tg, body := benchReceiver(b)
	c := New(Options{Timeout: 5e9, Guard: devClient().opts.Guard, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: 256})
	defer c.Close()
	benchAttempts(b, func(ctx context.Context) Result { return c.Send(ctx, tg, "msg_2b6c1f0e9d8a", body) })
}

// BenchmarkStart is BenchmarkSend with the attempts made as the pipeline
// makes them, with Start, whose result comes back over a channel. The
// receiver answers within quickAnswer, so done runs on the calling
// goroutine: side by side with BenchmarkSend it is what Start costs
// against a receiver that answers at once.
func BenchmarkStart(b *testing.B) {
	tg, body := benchReceiver(b)
	c := New(Options{Timeout: 5e9, Guard: devClient().opts.Guard, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: 256})
	defer c.Close()
	benchAttempts(b, func(ctx context.Context) Result {
		done := make(chan Result, 1)
		c.Start(ctx, tg, "msg_2b6c1f0e9d8a", body, func(r Result) { done <- r })
		return <-done
	})
}

// BenchmarkSendNetHTTP is BenchmarkSend's workload (same receiver, body,
// headers and signature, the same guarded dial, bounded response read and
// status rules) sent through net/http's Client and Transport with
// comparable settings instead of the hand-written transport. Side by side
// with BenchmarkSend it measures what that transport saves per attempt in
// time and allocations, which is why it exists; the receiver's share of
// both is the same.
func BenchmarkSendNetHTTP(b *testing.B) {
	tg, body := benchReceiver(b)
	tr := &http.Transport{
		DialContext:         devClient().opts.Guard.DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // feedbackd sends no Accept-Encoding
	}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer tr.CloseIdleConnections()
	benchAttempts(b, func(ctx context.Context) Result { return netHTTPSend(ctx, hc, tg, "msg_2b6c1f0e9d8a", body) })
}

// benchReceiver starts the benchmarks' receiver, which reads the body and
// answers 200 and is closed when the benchmark ends, and returns a target
// for it with a custom header and a 700-byte body.
func benchReceiver(b *testing.B) (*webhook.Target, []byte) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	tg, _ := target(&testing.T{}, srv.URL, map[string]string{"X-Tenant": "bench"})
	return tg, make([]byte, 700)
}

// benchAttempts runs send from 8 goroutines per CPU until b.N attempts are
// made, failing on the first that is not delivered.
func benchAttempts(b *testing.B, send func(context.Context) Result) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := send(b.Context()); r.Verdict != Delivered {
				b.Errorf("verdict %v class %q", r.Verdict, r.Class)
				return
			}
		}
	})
}

// netHTTPSend is Client.Send's request made with hc: the same headers
// (the target's own first, then the reserved ones), the same signature,
// at most 64 KiB of the answer read, the same status rules.
func netHTTPSend(ctx context.Context, hc *http.Client, t *webhook.Target, id string, body []byte) Result {
	now := time.Now()
	ts := now.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL.String(), bytes.NewReader(body))
	if err != nil {
		return Result{Verdict: Unreachable, Class: classInvalidURL}
	}
	for name, values := range t.Header {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "feedbackd/bench")
	req.Header.Set("Webhook-Id", id)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("Webhook-Signature", string(t.AppendSignatures(nil, id, ts, body, now)))
	resp, err := hc.Do(req)
	if err != nil {
		return Result{Verdict: Retry, Class: "net_http"}
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	return judge(resp.StatusCode, resp.Header, now)
}

// BenchmarkStartSlow is BenchmarkStart against a receiver slower than
// slowFactor times the brief wait (here 1 ms; the receiver answers after
// 8 ms), as endpoints 100 ms away are against quickAnswer:
// caller-ns/attempt is how long Start holds its caller. Once a
// connection's answer took that long, the next attempt on it is not
// waited for briefly, and the caller (a pipeline worker) is free once the
// request is written.
func BenchmarkStartSlow(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(8 * time.Millisecond)
	}))
	b.Cleanup(srv.Close)
	tg, _ := target(&testing.T{}, srv.URL, map[string]string{"X-Tenant": "bench"})
	body := make([]byte, 700)
	c := New(Options{Timeout: 5e9, Guard: devClient().opts.Guard, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: 256})
	defer c.Close()
	c.quick = time.Millisecond
	var held atomic.Int64 // ns callers spent in Start
	benchAttempts(b, func(ctx context.Context) Result {
		done := make(chan Result, 1)
		start := time.Now()
		c.Start(ctx, tg, "msg_2b6c1f0e9d8a", body, func(r Result) { done <- r })
		held.Add(int64(time.Since(start)))
		return <-done
	})
	b.ReportMetric(float64(held.Load())/float64(b.N), "caller-ns/attempt")
}
