// Package admin serves the admin HTTP API (webhook configs and campaigns,
// bearer-token protected) next to /healthz, /readyz and /metrics.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/replay"
	"github.com/feedbackd/feedbackd/pkg/signature"
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

// Replays runs dead-letter replay jobs.
type Replays interface {
	Start(ctx context.Context, req replay.Request) (replay.Progress, error)
	Get(ctx context.Context, id string) (replay.Progress, error)
}

// Check is one readiness condition; Func returns nil when it holds.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Options configure the API.
type Options struct {
	Token    string         // bearer token for /v1; required
	Policy   webhook.Policy // endpoint URL rules
	Checks   []Check        // readiness
	Replays  Replays        // nil: replay endpoints answer 501
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

type api struct {
	store  Store
	sender Sender
	opts   Options
	log    *slog.Logger
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// NewHandler returns the API's handler. It is safe for concurrent use.
func NewHandler(store Store, sender Sender, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{store: store, sender: sender, opts: opts, log: opts.Logger}
	mux := http.NewServeMux()
	v1 := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.authenticated(h)) }
	v1("POST /v1/webhooks", a.create)
	v1("GET /v1/webhooks", a.list)
	v1("GET /v1/webhooks/{imsOrg}/{sandboxId}", a.get)
	v1("PUT /v1/webhooks/{imsOrg}/{sandboxId}", a.replace)
	v1("DELETE /v1/webhooks/{imsOrg}/{sandboxId}", a.delete)
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/test", a.test)
	v1("POST /v1/webhooks/{imsOrg}/{sandboxId}/rotate-secret", a.rotateSecret)
	v1("PUT /v1/webhooks/{imsOrg}/{sandboxId}/campaigns/{campaignId}", a.enableCampaign)
	v1("DELETE /v1/webhooks/{imsOrg}/{sandboxId}/campaigns/{campaignId}", a.disableCampaign)
	v1("POST /v1/dlq/replays", a.startReplay)
	v1("GET /v1/dlq/replays/{id}", a.getReplay)
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

func (a *api) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || a.opts.Token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(a.opts.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="feedbackd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required", "")
			return
		}
		h(w, r)
	})
}

// created is the answer to a create: the config and, once, its secret.
type created struct {
	*webhook.Config
	SigningSecret string `json:"signingSecret"`
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	c, ok := a.decode(w, r)
	if !ok {
		return
	}
	secret, err := signature.NewSecret()
	if err != nil {
		a.fail(w, err)
		return
	}
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	if err := a.store.Create(r.Context(), &webhook.Stored{Config: *c, Secret: secret}); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("webhook created", "org", c.Org, "sandbox", c.Sandbox.ID)
	writeJSON(w, http.StatusCreated, created{Config: c, SigningSecret: secret})
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.List(r.Context(), r.URL.Query().Get("imsOrg"))
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]*webhook.Config, len(list))
	for i, st := range list {
		out[i] = &st.Config
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	st, err := a.store.Get(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &st.Config)
}

func (a *api) replace(w http.ResponseWriter, r *http.Request) {
	c, ok := a.decode(w, r)
	if !ok {
		return
	}
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if c.Org != org {
		writeError(w, http.StatusBadRequest, "invalid_config", "must match the path", "imsOrg")
		return
	}
	if c.Sandbox.ID != sb {
		writeError(w, http.StatusBadRequest, "invalid_config", "must match the path", "sandbox.id")
		return
	}
	st, err := a.store.Update(r.Context(), org, sb, func(st *webhook.Stored) error {
		created := st.CreatedAt
		st.Config = *c
		st.CreatedAt, st.UpdatedAt = created, time.Now().UTC()
		return nil
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("webhook replaced", "org", org, "sandbox", sb, "enabled", st.Enabled)
	writeJSON(w, http.StatusOK, &st.Config)
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if err := a.store.Delete(r.Context(), org, sb); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("webhook deleted", "org", org, "sandbox", sb)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) enableCampaign(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("campaignId")
	a.campaigns(w, r, func(st *webhook.Stored) error {
		if !slices.Contains(st.Campaigns, webhook.AllCampaigns) && !slices.Contains(st.Campaigns, id) {
			st.Campaigns = append(st.Campaigns, id)
		}
		return nil
	})
}

func (a *api) disableCampaign(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("campaignId")
	a.campaigns(w, r, func(st *webhook.Stored) error {
		if slices.Contains(st.Campaigns, webhook.AllCampaigns) {
			return errWildcard
		}
		st.Campaigns = slices.DeleteFunc(st.Campaigns, func(c string) bool { return c == id })
		return nil
	})
}

var errWildcard = errors.New(`campaigns is ["*"] (every campaign); replace the config with an explicit list of campaign ids to disable one`)

func (a *api) campaigns(w http.ResponseWriter, r *http.Request, change func(*webhook.Stored) error) {
	id := r.PathValue("campaignId")
	if !validCampaignID(id) {
		writeError(w, http.StatusBadRequest, "invalid_campaign", "campaign ids are 1 to 128 of A-Z a-z 0-9 . _ : -", "campaignId")
		return
	}
	st, err := a.store.Update(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"), func(st *webhook.Stored) error {
		if err := change(st); err != nil {
			return err
		}
		st.UpdatedAt = time.Now().UTC()
		return nil
	})
	if errors.Is(err, errWildcard) {
		writeError(w, http.StatusConflict, "campaigns_wildcard", err.Error(), "campaigns")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &st.Config)
}

func validCampaignID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
			return false
		}
	}
	return true
}

func (a *api) rotateSecret(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotImplemented, "not_implemented", "secret rotation is not available yet", "")
}

// testResult is the answer of the test endpoint.
type testResult struct {
	WebhookID  string `json:"webhookId"`
	Outcome    string `json:"outcome"`
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// test sends a synthetic "sent" event to the tenant's endpoint now, outside
// the pipeline, and reports the attempt.
func (a *api) test(w http.ResponseWriter, r *http.Request) {
	st, err := a.store.Get(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"))
	if err != nil {
		a.fail(w, err)
		return
	}
	t, err := webhook.NewTarget(st)
	if err != nil {
		a.fail(w, err)
		return
	}
	id := "test_" + strings.ToLower(rand.Text())
	body, _ := json.Marshal(map[string]any{
		"requestId": id,
		"imsOrg":    st.Org,
		"sandbox":   st.Sandbox,
		"channel":   st.Channels[0],
		"eventType": "message.feedback",
		"messageExecution": map[string]any{
			"messageExecutionID": id, "messageType": "test", "campaignID": "feedbackd-test",
		},
		"messageDeliveryFeedback": map[string]any{"feedbackStatus": map[string]string{"value": "sent"}},
	})
	res := a.sender.Send(r.Context(), t, id, body)
	writeJSON(w, http.StatusOK, testResult{
		WebhookID: id, Outcome: res.Outcome(), Status: res.Status, Error: res.Class, DurationMs: res.Duration.Milliseconds(),
	})
}

// startReplay starts a replay job of dead letters (or finds it running):
// 202 with its progress and a Location to poll, 409 if it runs already.
func (a *api) startReplay(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "replays are not configured", "")
		return
	}
	var req replay.Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body is not a replay request: "+err.Error(), "")
		return
	}
	p, err := a.opts.Replays.Start(r.Context(), req)
	var reqErr *replay.RequestError
	switch {
	case errors.Is(err, replay.ErrRunning):
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":  apiError{Code: "running", Message: err.Error()},
			"replay": p,
		})
	case errors.As(err, &reqErr):
		writeError(w, http.StatusBadRequest, "invalid_request", reqErr.Message, reqErr.Field)
	case err != nil:
		a.fail(w, err)
	default:
		w.Header().Set("Location", "/v1/dlq/replays/"+p.ID)
		writeJSON(w, http.StatusAccepted, p)
	}
}

func (a *api) getReplay(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "replays are not configured", "")
		return
	}
	p, err := a.opts.Replays.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, replay.ErrNoJob) {
		writeError(w, http.StatusNotFound, "not_found", err.Error(), "")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
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
func (a *api) decode(w http.ResponseWriter, r *http.Request) (*webhook.Config, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is over %d bytes", maxBody), "")
		return nil, false
	}
	c, err := webhook.Decode(r.Context(), body, a.opts.Policy)
	var fe *webhook.FieldError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, "invalid_config", fe.Message, fe.Field)
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_config", err.Error(), "")
		return nil, false
	}
	return c, true
}

// fail maps store errors to answers; unexpected errors are logged, not
// returned, so no internal detail reaches the client.
func (a *api) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, configstore.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no webhook config for this organisation and sandbox", "")
	case errors.Is(err, configstore.ErrExists):
		writeError(w, http.StatusConflict, "conflict", err.Error(), "")
	case errors.Is(err, configstore.ErrNotLoaded):
		writeError(w, http.StatusServiceUnavailable, "not_ready", "webhook configs are being loaded; try again shortly", "")
	default:
		a.log.Error("admin request failed", "err", err)
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
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
