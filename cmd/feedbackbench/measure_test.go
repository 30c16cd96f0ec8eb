package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// memstats reads the garbage collections from go_gc_duration_seconds'
// count, and says when a feedbackd did not expose it.
func TestMemstatsCollections(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		gcs        float64
		known      bool
	}{
		{"summary", "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0.5\"} 0.0001\ngo_gc_duration_seconds_sum 0.01\ngo_gc_duration_seconds_count 42\n", 42, true},
		{"missing", "# TYPE go_goroutines gauge\ngo_goroutines 7\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, tc.body) }))
			defer srv.Close()
			m := (&daemonProc{api: srv.URL}).memstats(srv.Client())
			if m.gcs != tc.gcs || m.gcsKnown != tc.known {
				t.Errorf("gcs %v known %v, want %v %v", m.gcs, m.gcsKnown, tc.gcs, tc.known)
			}
		})
	}
	for n, want := range map[float64]string{-1: "", 0: "; 0 garbage collections in feedbackd meanwhile", 3: "; 3 garbage collections in feedbackd meanwhile"} {
		if got := collections(n); got != want {
			t.Errorf("collections(%v) = %q, want %q", n, got, want)
		}
	}
}
