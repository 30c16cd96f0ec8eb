package deliver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkSend is one attempt against a loopback receiver that answers 200
// at once, from concurrent goroutines as the pipeline sends: signing,
// request building, the HTTP exchange and judging. The receiver runs in
// the same process, so its allocations are counted too.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	tg, _ := target(&testing.T{}, srv.URL, map[string]string{"X-Tenant": "bench"})
	c := New(Options{Timeout: 5e9, Guard: devClient().opts.Guard, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: 256})
	defer c.Close()
	body := make([]byte, 700)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := c.Send(b.Context(), tg, "msg_2b6c1f0e9d8a", body); r.Verdict != Delivered {
				b.Errorf("verdict %v class %q", r.Verdict, r.Class)
				return
			}
		}
	})
}
