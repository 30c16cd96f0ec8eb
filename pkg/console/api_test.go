package console

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// apiPath keeps every segment one segment: a path cleaner (the API's
// ServeMux) finds nothing to resolve, and the API's wildcards get the
// segments back as they were.
func TestAPIPath(t *testing.T) {
	for _, tc := range []struct {
		segments []string
		want     string
	}{
		{[]string{"v1", "webhooks", "o", "s", "campaigns", ".."}, "/v1/webhooks/o/s/campaigns/%2E%2E"},
		{[]string{"v1", "webhooks", "o", "s", "campaigns", "."}, "/v1/webhooks/o/s/campaigns/%2E"},
		{[]string{"v1", "webhooks", "..", "..", "messages", "m"}, "/v1/webhooks/%2E%2E/%2E%2E/messages/m"},
		{[]string{"v1", "webhooks", "a/b", "s", "messages", "x y"}, "/v1/webhooks/a%2Fb/s/messages/x%20y"},
		{[]string{"v1", "webhooks", "o", "s", "campaigns", "..."}, "/v1/webhooks/o/s/campaigns/..."},
		{[]string{"v1", "dlq", "replays", "r-1"}, "/v1/dlq/replays/r-1"},
	} {
		got := apiPath(tc.segments...)
		if got != tc.want {
			t.Errorf("%q: %s, want %s", tc.segments, got, tc.want)
			continue
		}
		var seen string
		mux := http.NewServeMux()
		mux.HandleFunc("/{a}/{b}/{c}/{d}/{e}/{f}", func(_ http.ResponseWriter, r *http.Request) { seen = r.PathValue("f") })
		mux.HandleFunc("/{a}/{b}/{c}/{d}", func(_ http.ResponseWriter, r *http.Request) { seen = r.PathValue("d") })
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{header: http.Header{}}
		mux.ServeHTTP(rec, &http.Request{Method: http.MethodDelete, URL: u})
		if last := tc.segments[len(tc.segments)-1]; rec.status != 0 || seen != last {
			t.Errorf("%s: served %d with last segment %q, want %q", got, rec.status, seen, last)
		}
	}
}

// A redirect of the API's mux (a path it would clean) is an error of the
// console, never taken for a success nor shown as the API's error.
func TestCallRedirectIsAnError(t *testing.T) {
	mux := http.NewServeMux()
	done := false
	mux.HandleFunc("DELETE /v1/webhooks/o/s", func(w http.ResponseWriter, _ *http.Request) { done = true })
	c := New(mux, Options{})
	status, err := c.call(t.Context(), &session{token: "t"}, http.MethodDelete, "/v1/webhooks/o/s/campaigns/..", nil, nil)
	var ae *apiError
	if err == nil || errors.As(err, &ae) || status/100 != 3 || done {
		t.Fatalf("status %d, error %v, deleted %v", status, err, done)
	}
}
