package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/feedbackd/feedbackd/schemas"
)

// Every admin API call of these tests goes through adminProxy, which holds
// each request and each answer against schemas/openapi.json with
// kin-openapi: h.api is the proxy's address, so h.call, raw http requests,
// curl in scripts and the feedbackctl binary are all checked. A request that
// is invalid on purpose says so with the deliberatelyInvalid path prefix
// (h.callInvalid, h.ctlInvalid): only its answer is checked then.
const deliberatelyInvalid = "/_deliberately-invalid"

type skipRequestCheck struct{}

var (
	apiRouterOnce sync.Once
	apiRouter     routers.Router
	apiRouterErr  error
)

// openAPIRouter loads the document once per test run.
func openAPIRouter(t *testing.T) routers.Router {
	t.Helper()
	apiRouterOnce.Do(func() {
		var doc *openapi3.T
		if doc, apiRouterErr = openapi3.NewLoader().LoadFromData(schemas.OpenAPI()); apiRouterErr != nil {
			return
		}
		if apiRouterErr = doc.Validate(context.Background()); apiRouterErr != nil {
			return
		}
		apiRouter, apiRouterErr = legacy.NewRouter(doc)
	})
	if apiRouterErr != nil {
		t.Fatalf("schemas/openapi.json: %v", apiRouterErr)
	}
	return apiRouter
}

// adminProxy serves, for the rest of the test, a reverse proxy to the admin
// API at target that validates every exchange, and returns its URL.
func adminProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	next := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(next.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: &openAPIValidator{router: openAPIRouter(t), next: next, report: t.Errorf},
		// feedbackd stopped: the client sees a 502, as from any proxy.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := strings.CutPrefix(r.URL.Path, deliberatelyInvalid); ok {
			r = r.Clone(context.WithValue(r.Context(), skipRequestCheck{}, true))
			r.URL.Path, r.URL.RawPath = p, strings.TrimPrefix(r.URL.RawPath, deliberatelyInvalid)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// openAPIValidator is the proxy's transport: it reports (report is
// t.Errorf) each request or answer that does not match the document.
type openAPIValidator struct {
	router routers.Router
	next   http.RoundTripper
	report func(format string, args ...any)
}

var validationOptions = &openapi3filter.Options{
	AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc, // feedbackd checks tokens itself
	IncludeResponseStatus:             true,                                  // an undocumented status is a mismatch
	RejectWhenRequestBodyNotSpecified: true,
	SkipSettingDefaults:               true, // forward the body as sent
}

func (v *openAPIValidator) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	where := req.Method + " " + req.URL.RequestURI()
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.report("%s: not in schemas/openapi.json: %v", where, err)
		return v.next.RoundTrip(req)
	}
	checked := req.Clone(req.Context())
	checked.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{Request: checked, PathParams: params, Route: route, Options: validationOptions}
	if req.Context().Value(skipRequestCheck{}) == nil {
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			v.report("%s: the request does not match schemas/openapi.json: %s", where, short(err))
		}
	}
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	plain := raw
	if resp.Header.Get("Content-Encoding") == "gzip" { // /metrics, when the client asked for it
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			plain, err = io.ReadAll(zr)
		}
		if err != nil {
			v.report("%s: answer %d: gzip: %v", where, resp.StatusCode, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(plain)), Options: validationOptions,
	}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		v.report("%s: answer %d does not match schemas/openapi.json: %s\nanswer: %s", where, resp.StatusCode, short(err), truncate(plain, 2000))
	}
	return resp, nil
}

// short keeps kin-openapi's message readable: it quotes whole schemas.
func short(err error) []byte { return truncate([]byte(err.Error()), 3000) }

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}

// callInvalid is call for a request that is invalid on purpose: only the
// answer is held against the document.
func (h *harness) callInvalid(method, path string, body, out any) int {
	h.t.Helper()
	return h.call(method, deliberatelyInvalid+path, body, out)
}

// ctlInvalid is ctl for a command that sends an invalid request on purpose.
func (h *harness) ctlInvalid(args ...string) (string, int) {
	h.t.Helper()
	return h.ctlAt(h.api+deliberatelyInvalid, args...)
}

// The validator finds mismatches: an undocumented route, a request body
// the document refuses, an undocumented status, a leaked secret and a
// missing field in an answer, an error of the wrong shape.
func TestOpenAPIValidatorFindsMismatches(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/webhooks/o/s":
			_, _ = io.WriteString(w, `{"imsOrg":"o","sandbox":{"id":"s"},"name":"n","channels":["email"],"url":"https://x","auth":{"type":"none"},"campaigns":["*"],"enabled":true,"createdAt":"2026-01-01T00:00:00Z","signingSecret":"whsec_leak"}`)
		case "/v1/webhooks":
			w.WriteHeader(http.StatusTeapot)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":"not found"}`)
		}
	}))
	defer srv.Close()
	var reports []string
	v := &openAPIValidator{router: openAPIRouter(t), next: http.DefaultTransport, report: func(f string, a ...any) {
		reports = append(reports, fmt.Sprintf(f, a...))
	}}
	c := &http.Client{Transport: v}
	for _, tc := range []struct {
		method, path, body string
		want               []string
	}{
		{"GET", "/v1/webhooks/o/s", "", []string{"missing property 'updatedAt'", "signingSecret"}},
		{"POST", "/v1/webhooks", `{"imsOrg":"o"}`, []string{"request does not match", "answer 418"}},
		{"GET", "/v1/dlq/replays/rp-1", "", []string{"answer 404 does not match"}},
		{"GET", "/v1/nowhere", "", []string{"not in schemas/openapi.json"}},
	} {
		reports = nil
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		all := strings.Join(reports, "\n")
		for _, w := range tc.want {
			if !strings.Contains(all, w) {
				t.Errorf("%s %s: reports do not say %q:\n%s", tc.method, tc.path, w, all)
			}
		}
	}
}

// The served document is the file; feedbackctl's admin calls that other
// tests do not make (list by org, rotate-key, replay --server) and error
// answers they do not provoke go through the validator too.
func TestOpenAPIServedAndFollowed(t *testing.T) {
	h := start(t, nil)
	resp, err := http.Get(h.api + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(served, schemas.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.json: %d, %d bytes (want the %d of schemas/openapi.json)", resp.StatusCode, len(served), len(schemas.OpenAPI()))
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"} {
		resp, err := http.Get(h.api + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}

	rc := newReceiver(t, nil)
	file := filepath.Join(t.TempDir(), "jwt.json")
	cfg := fmt.Sprintf(`{"imsOrg":"orgK","sandbox":{"id":"sb"},"name":"signed","channels":["email"],"url":%q,"auth":{"type":"jwt","algorithm":"ES256"}}`, rc.URL)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"webhooks", "create", "-f", file},
		{"webhooks", "rotate-key", "orgK", "sb"},
		{"webhooks", "list", "--org", "orgK"},
		{"webhooks", "edit", "orgK", "sb", "--name", "renamed"}, // sends back auth.keyId, read-only
		{"dlq", "replay", "--server", "--org", "orgK", "--dry-run"},
	} {
		if out, code := h.ctl(args...); code != 0 {
			t.Errorf("feedbackctl %s: %d\n%s", strings.Join(args, " "), code, out)
		}
	}

	// Error answers.
	h.createWebhook(webhookConfig("orgN", "sb", rc.URL))
	huge := webhookConfig("orgN", "sb", rc.URL)
	huge["name"] = strings.Repeat("x", 300<<10)
	for _, c := range []struct {
		method, path string
		body         any
		invalid      bool
		want         int
	}{
		{"POST", "/v1/webhooks", huge, true, 413},
		{"PUT", "/v1/webhooks/orgN/sb", webhookConfig("orgN", "other", rc.URL), false, 400},
		{"PUT", "/v1/webhooks/orgN/nope", webhookConfig("orgN", "nope", rc.URL), false, 404},
		{"POST", "/v1/webhooks/orgN/sb/rotate-key", nil, false, 409},
		{"PUT", "/v1/webhooks/orgN/sb/campaigns/bad%20id", nil, true, 400},
		{"DELETE", "/v1/webhooks/orgN/sb/campaigns/c1", nil, false, 409},
		{"POST", "/v1/webhooks/orgN/nope/rotate-secret", nil, false, 404},
		{"POST", "/v1/dlq/replays", map[string]any{"since": "1h", "until": "2h"}, false, 400},
	} {
		call := h.call
		if c.invalid {
			call = h.callInvalid
		}
		if code := call(c.method, c.path, c.body, nil); code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	var p struct{ ID string }
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgN", "since": time.Now().Add(-time.Hour).Format(time.RFC3339)}, &p); code != 202 {
		t.Errorf("replay: %d", code)
	}
	if code := h.call("GET", "/v1/dlq/replays/"+p.ID, nil, nil); code != 200 {
		t.Errorf("replay progress: %d", code)
	}
}
