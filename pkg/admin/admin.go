// Package admin serves the admin HTTP API (webhook configs, campaigns,
// tests, secret and key rotation, dead-letter replays, recoveries from the
// input topics, the delivery log and endpoint health), the JWKS of endpoint JWT keys, /healthz, /readyz and
// /metrics.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/replay"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Store is what the API needs from the config store.
type Store interface {
	Create(ctx context.Context, st *webhook.Stored) error
	Get(ctx context.Context, org, sandboxID string) (*webhook.Stored, error)
	List(ctx context.Context, org string) ([]*webhook.Stored, error)
	Update(ctx context.Context, org, sandboxID string, change func(*webhook.Stored) error) (*webhook.Stored, error)
	Delete(ctx context.Context, org, sandboxID string) error
}

// Sender makes one delivery attempt, for the test endpoint.
type Sender interface {
	Send(ctx context.Context, t *webhook.Target, id string, body []byte) deliver.Result
}

// Replays runs dead-letter replay jobs and recovery jobs.
type Replays interface {
	Start(ctx context.Context, req replay.Request) (replay.Progress, error)
	Get(ctx context.Context, id string) (replay.Progress, error)
	List(ctx context.Context, limit int) ([]replay.Progress, error)
	Recoveries(ctx context.Context, org, sandbox string, limit int) ([]replay.Progress, error)
}

// Check is one readiness condition; Func returns nil when it holds.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Options configure the API.
type Options struct {
	Auth          *adminauth.Verifier // who may call /v1; required
	Policy        webhook.Policy      // endpoint URL rules
	RotationGrace time.Duration       // how long a rotated secret or key stays valid
	Checks        []Check             // readiness
	Replays       Replays             // nil: replay and recovery endpoints answer 501
	Log           DeliveryLog         // nil: attempts, messages and health answer 501
	Breakers      Breakers            // nil: health shows no breaker
	DeadLetters   DeadLetters         // nil: GET /v1/dlq answers 501
	Gatherer      prometheus.Gatherer
	Logger        *slog.Logger
}

type api struct {
	store  Store
	sender Sender
	opts   Options
	log    *slog.Logger
	jwks   jwksCache
	scans  chan struct{} // a slot per running read of the dead-letter topic
}

// maxBody bounds request bodies. A config at every limit of its schema
// (1,000 campaign ids of 128 characters, 20 headers of 1 KiB, a 16 KiB
// key) fits, so whatever GET returns can be PUT back.
const maxBody = 256 << 10

// NewHandler returns the API's handler. It is safe for concurrent use.
func NewHandler(store Store, sender Sender, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RotationGrace <= 0 {
		opts.RotationGrace = 24 * time.Hour
	}
	a := &api{store: store, sender: sender, opts: opts, log: opts.Logger, scans: make(chan struct{}, maxScans)}
	mux := newRouteMux()
	v1 := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.authenticated(h)) }
	v1("POST /v1/webhooks", a.create)
	v1("GET /v1/webhooks", a.list)
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}", a.scoped(a.get))
	v1("PUT /v1/webhooks/{imsOrg}/{sandboxId}", a.scoped(a.replace))
	v1("DELETE /v1/webhooks/{imsOrg}/{sandboxId}", a.scoped(a.delete))
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/test", a.scoped(a.test))
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/rotate-secret", a.scoped(a.rotateSecret))
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/rotate-key", a.scoped(a.rotateKey))
	v1("PUT /v1/webhooks/{imsOrg}/{sandboxId}/campaigns/{campaignId}", a.scoped(a.enableCampaign))
	v1("DELETE /v1/webhooks/{imsOrg}/{sandboxId}/campaigns/{campaignId}", a.scoped(a.disableCampaign))
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/recover", a.scoped(a.startRecovery))
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}/recoveries", a.scoped(a.listRecoveries))
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}/recoveries/{id}", a.scoped(a.getRecovery))
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}/attempts", a.scoped(a.listAttempts))
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}/messages/{webhookId}", a.scoped(a.getMessage))
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}/health", a.scoped(a.health))
	v1("GET /v1/dlq", a.listDeadLetters)
	v1("POST /v1/dlq/replays", a.startReplay)
	v1("GET /v1/dlq/replays", a.listReplays)
	v1("GET /v1/dlq/replays/{id}", a.getReplay)
	mux.HandleFunc("GET /.well-known/jwks.json", a.serveJWKS)
	mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", a.ready)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	})
	return mux
}

func (a *api) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, checks := http.StatusOK, map[string]string{}
	for _, c := range a.opts.Checks {
		if err := c.Func(ctx); err != nil {
			status, checks[c.Name] = http.StatusServiceUnavailable, err.Error()
		} else {
			checks[c.Name] = "ok"
		}
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}

// decode reads and validates a config body, answering the error itself.
func (a *api) decode(w http.ResponseWriter, r *http.Request) (*webhook.Config, webhook.Credentials, bool) {
	body, ok := readBody(w, r)
	if !ok {
		return nil, webhook.Credentials{}, false
	}
	c, cr, err := webhook.Decode(r.Context(), body, a.opts.Policy)
	if !a.fieldError(w, err) {
		return nil, webhook.Credentials{}, false
	}
	return c, cr, true
}

// readBody reads a request body of at most maxBody bytes, answering the
// error itself: 413 for a larger body, 408 when the client was too slow to
// send it (the server's read timeout), 400 for any other failure.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == nil:
		return body, true
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is over %d bytes", maxBody), "")
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(w, http.StatusRequestTimeout, "timeout", "the body did not arrive in time", "")
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read", "")
	}
	return nil, false
}

// fieldError answers err if it is a *webhook.FieldError (400) or another
// error (500) and reports whether err was nil.
func (a *api) fieldError(w http.ResponseWriter, err error) bool {
	var fe *webhook.FieldError
	switch {
	case err == nil:
		return true
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, "invalid_config", fe.Message, fe.Field)
	default:
		a.fail(w, err)
	}
	return false
}

// fail maps store errors to answers; unexpected errors are logged, not
// returned, so no internal detail reaches the client.
func (a *api) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, configstore.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no webhook config for this organisation and sandbox", "")
	case errors.Is(err, configstore.ErrExists):
		writeError(w, http.StatusConflict, "conflict", err.Error(), "")
	case errors.Is(err, configstore.ErrKeyMissing):
		a.log.Error("admin request failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, "secrets_key_missing",
			"this config's secrets were sealed with a key this instance does not have; see feedbackd logs", "")
	case errors.Is(err, configstore.ErrNotLoaded):
		writeError(w, http.StatusServiceUnavailable, "not_ready", "webhook configs are being loaded; try again shortly", "")
	default:
		a.log.Error("admin request failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; see feedbackd logs", "")
	}
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeCacheable writes a 200 without overriding the caller's caching.
func writeCacheable(w http.ResponseWriter, v any) {
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}
