package admin

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
	"github.com/feedbackd/feedbackd/schemas"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(schemas.OpenAPI())
	if err != nil {
		t.Fatalf("schemas/openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("schemas/openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// newTestHandler builds the API with everything that adds routes (a
// Gatherer adds /metrics).
func newTestHandler() *routeMux {
	h := NewHandler(nil, nil, Options{
		Auth:     adminauth.New(adminauth.Options{Token: "test-token"}),
		Gatherer: prometheus.NewRegistry(),
	})
	return h.(*routeMux)
}

// catchAll answers 404 for every method and path no other route takes; the
// document says so in its description, as OpenAPI has no path for it.
const catchAll = "/"

var pathParam = regexp.MustCompile(`\{([^}]*)\}`)

// TestOpenAPICoversEveryRoute fails when NewHandler serves a route the
// document lacks, documents one it does not serve, or routes a documented
// path to another pattern than the one it is documented as.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	mux := newTestHandler()

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var served []string
	for _, p := range mux.patterns {
		if p == catchAll {
			continue
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok || strings.Contains(path, "...}") || strings.HasSuffix(path, "/") || strings.Contains(path, "{$}") {
			t.Errorf("route %q: give it a method and a path OpenAPI can express ({name} segments only), then document it", p)
			continue
		}
		served = append(served, method+" "+path)
	}
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("NewHandler serves %s, which schemas/openapi.json does not document", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("schemas/openapi.json documents %s, which NewHandler does not serve", r)
		}
	}

	// Each documented operation, with sample values in its path, reaches
	// the route it is documented as.
	for _, r := range documented {
		method, path, _ := strings.Cut(r, " ")
		sample := pathParam.ReplaceAllString(path, "x1")
		req := httptest.NewRequest(method, sample, nil)
		if _, pattern := mux.Handler(req); pattern != r {
			t.Errorf("%s %s is routed to %q, not to %q", method, sample, pattern, r)
		}
	}
}

// The document is served without a token, byte for byte.
func TestServeOpenAPI(t *testing.T) {
	loadOpenAPI(t)
	rec := httptest.NewRecorder()
	newTestHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), schemas.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.json: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
}
