package admin

import (
	"net/http"

	"github.com/feedbackd/feedbackd/schemas"
)

// serveOpenAPI publishes the OpenAPI document of this API
// (schemas/openapi.json). It needs no token: it describes the API, not
// anyone's data.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(schemas.OpenAPI())
}

// routeMux is a ServeMux that remembers the patterns registered on it, so
// that a test can hold every route NewHandler serves against the OpenAPI
// document: a route added without documenting it fails that test.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}
