package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/deliverylog"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// DeliveryLog reads the recent outcome records of configs (package
// deliverylog).
type DeliveryLog interface {
	Attempts(ctx context.Context, org, sandbox string, q deliverylog.Query) (deliverylog.Page, error)
	Message(ctx context.Context, org, sandbox, webhookID string) (deliverylog.Message, error)
	Health(ctx context.Context, org, sandbox string, now time.Time) (deliverylog.Health, error)
	DayRates(ctx context.Context, configs []deliverylog.ConfigID, now time.Time) ([]*float64, error)
}

// Breakers reads endpoints' circuit breakers (package admission).
type Breakers interface {
	Breaker(ctx context.Context, endpoint string) (admission.Breaker, error)
}

func (a *api) noLog(w http.ResponseWriter) bool {
	if a.opts.Log != nil {
		return false
	}
	writeError(w, http.StatusNotImplemented, "not_implemented", "the delivery log is not configured (delivery_log.enabled)", "")
	return true
}

// listAttempts answers the config's recent records, newest first, with the
// filters and cursor of deliverylog.ParseQuery; 400 naming the parameter
// at fault, 404 for a config that does not exist (as health).
func (a *api) listAttempts(w http.ResponseWriter, r *http.Request) {
	if a.noLog(w) {
		return
	}
	q, err := deliverylog.ParseQuery(r.URL.Query())
	if a.queryError(w, err) {
		return
	}
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if _, err := a.store.Get(r.Context(), org, sb); err != nil {
		a.fail(w, err)
		return
	}
	p, err := a.opts.Log.Attempts(r.Context(), org, sb, q)
	if a.queryError(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// queryError answers err (400 for a *deliverylog.FieldError) and reports
// whether there was one.
func (a *api) queryError(w http.ResponseWriter, err error) bool {
	var fe *deliverylog.FieldError
	switch {
	case err == nil:
		return false
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, "invalid_request", fe.Message, fe.Field)
	default:
		a.fail(w, err)
	}
	return true
}

// getMessage answers every record of one webhook-id, oldest first, and
// the outcome its delivery ended with; 404 for a config that does not
// exist (as health and attempts) and when the log holds none.
func (a *api) getMessage(w http.ResponseWriter, r *http.Request) {
	if a.noLog(w) {
		return
	}
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if _, err := a.store.Get(r.Context(), org, sb); err != nil {
		a.fail(w, err)
		return
	}
	m, err := a.opts.Log.Message(r.Context(), org, sb, r.PathValue("webhookId"))
	switch {
	case errors.Is(err, deliverylog.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "the delivery log holds no record of this webhook-id (it keeps delivery_log.per_config records for at most delivery_log.max_age)", "")
	case err != nil:
		a.fail(w, err)
	default:
		writeJSON(w, http.StatusOK, m)
	}
}

// healthReport is the answer of GET .../health.
type healthReport struct {
	Org            string `json:"imsOrg"`
	Sandbox        string `json:"sandboxId"`
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabledReason,omitempty"`
	// Breaker is nil when it could not be read (Redis did not answer).
	Breaker *admission.Breaker `json:"breaker"`
	deliverylog.Health
}

// health answers the config's endpoint health: counts, success rates and
// durations from the delivery log, the circuit breaker, and whether the
// config is enabled. 404 for a config that does not exist.
func (a *api) health(w http.ResponseWriter, r *http.Request) {
	if a.noLog(w) {
		return
	}
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	st, err := a.store.Get(r.Context(), org, sb)
	if err != nil {
		a.fail(w, err)
		return
	}
	h, err := a.opts.Log.Health(r.Context(), org, sb, time.Now())
	if err != nil {
		a.fail(w, err)
		return
	}
	rep := healthReport{Org: org, Sandbox: sb, Enabled: st.Enabled, DisabledReason: st.DisabledReason, Health: h}
	if a.opts.Breakers != nil {
		if t, err := webhook.NewTarget(st); err == nil {
			if b, err := a.opts.Breakers.Breaker(r.Context(), t.Endpoint); err == nil {
				rep.Breaker = &b
			} else {
				a.log.Warn("circuit breaker not read", "org", org, "sandbox", sb, "error", err)
			}
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// successRate is a config's success rate of the last day in a list.
type successRate struct {
	Org     string   `json:"imsOrg"`
	Sandbox string   `json:"sandboxId"`
	LastDay *float64 `json:"lastDay"`
}

// successRates are the configs' day success rates, in their order: one
// light read of the delivery log (its day counts only) for the whole list.
func (a *api) successRates(ctx context.Context, cfgs []*webhook.Config) ([]successRate, error) {
	ids := make([]deliverylog.ConfigID, len(cfgs))
	for i, c := range cfgs {
		ids[i] = deliverylog.ConfigID{Org: c.Org, Sandbox: c.Sandbox.ID}
	}
	rates, err := a.opts.Log.DayRates(ctx, ids, time.Now())
	if err != nil {
		return nil, err
	}
	out := make([]successRate, len(cfgs))
	for i, c := range cfgs {
		out[i] = successRate{Org: c.Org, Sandbox: c.Sandbox.ID, LastDay: rates[i]}
	}
	return out, nil
}
