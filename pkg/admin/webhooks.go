package admin

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// created is the answer to a create or replace: the config and the secret
// material generated for it, shown this once.
type created struct {
	*webhook.Config
	webhook.Generated
	JWK *endpointauth.JWK `json:"jwk,omitempty"` // public key of asymmetric JWT auth
}

func answer(st *webhook.Stored, g webhook.Generated) created {
	out := created{Config: &st.Config, Generated: g}
	if len(st.JWTKeys) > 0 && endpointauth.Asymmetric(st.JWTKeys[0].Algorithm) {
		if jwk, err := endpointauth.PublicJWK(st.JWTKeys[0].Algorithm, st.JWTKeys[0].ID, st.JWTKeys[0].Material); err == nil {
			out.JWK = &jwk
		}
	}
	return out
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	c, cr, ok := a.decode(w, r)
	if !ok {
		return
	}
	if !principal(r).Allows(c.Org) {
		writeError(w, http.StatusForbidden, "forbidden", "this token may not create configs for that organisation", "imsOrg")
		return
	}
	st, g, err := webhook.NewStored(c, cr, time.Now().UTC())
	if !a.fieldError(w, err) {
		return
	}
	if err := a.store.Create(r.Context(), st); err != nil {
		a.fail(w, err)
		return
	}
	a.jwks.invalidate()
	a.log.Info("webhook created", "org", c.Org, "sandbox", c.Sandbox.ID, "auth", c.Auth.Type)
	writeJSON(w, http.StatusCreated, answer(st, g))
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	orgs := []string{r.URL.Query().Get("imsOrg")}
	if !p.Admin {
		if orgs[0] == "" {
			orgs = p.Orgs
		} else if !p.Allows(orgs[0]) {
			orgs = nil // another organisation's: nothing to see
		}
	}
	include := r.URL.Query().Get("include")
	if include != "" && include != "successRate" {
		writeError(w, http.StatusBadRequest, "invalid_request", `include takes "successRate" (each config's success rate of the last day)`, "include")
		return
	}
	out := []*webhook.Config{}
	for _, org := range orgs {
		list, err := a.store.List(r.Context(), org)
		if err != nil {
			a.fail(w, err)
			return
		}
		for _, st := range list {
			out = append(out, &st.Config)
		}
	}
	answer := map[string]any{"webhooks": out}
	if include != "" && a.opts.Log != nil {
		rates, err := a.successRates(r.Context(), out)
		if err != nil {
			a.fail(w, err)
			return
		}
		answer["successRates"] = rates
	}
	writeJSON(w, http.StatusOK, answer)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	st, err := a.store.Get(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &st.Config)
}

// replace writes a whole new config. The signing secrets stay; the JWT key
// and the OAuth2 client secret stay unless the request brings new ones or
// changes the auth kind (a replaced JWT key stays in the JWKS for the
// rotation grace).
func (a *api) replace(w http.ResponseWriter, r *http.Request) {
	c, cr, ok := a.decode(w, r)
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
	var g webhook.Generated
	st, err := a.store.Update(r.Context(), org, sb, func(st *webhook.Stored) error {
		var err error
		g, err = st.Replace(c, cr, time.Now().UTC(), a.opts.RotationGrace)
		return err
	})
	if !a.fieldError(w, err) {
		return
	}
	a.jwks.invalidate()
	a.log.Info("webhook replaced", "org", org, "sandbox", sb, "enabled", st.Enabled, "auth", st.Auth.Type)
	writeJSON(w, http.StatusOK, answer(st, g))
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if err := a.store.Delete(r.Context(), org, sb); err != nil {
		a.fail(w, err)
		return
	}
	a.jwks.invalidate()
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
		if err := webhook.ValidateCampaigns(st.Campaigns); err != nil {
			return err
		}
		st.UpdatedAt = time.Now().UTC()
		return nil
	})
	var fe *webhook.FieldError
	switch {
	case errors.Is(err, errWildcard):
		writeError(w, http.StatusConflict, "campaigns_wildcard", err.Error(), "campaigns")
		return
	case errors.As(err, &fe): // the list would break the config's rules (maxItems)
		writeError(w, http.StatusConflict, "campaigns_limit", fe.Message, fe.Field)
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &st.Config)
}

func validCampaignID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
			return false
		}
	}
	return true
}

// rotateSecret issues a new signing secret; the previous ones are sent
// along (space-separated webhook-signature) until the grace period ends.
func (a *api) rotateSecret(w http.ResponseWriter, r *http.Request) {
	var secret string
	var until time.Time
	_, err := a.store.Update(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"), func(st *webhook.Stored) error {
		var err error
		secret, until, err = st.RotateSecret(time.Now().UTC(), a.opts.RotationGrace)
		return err
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("signing secret rotated", "org", r.PathValue("imsOrg"), "sandbox", r.PathValue("sandboxId"), "previous_valid_until", until)
	writeJSON(w, http.StatusOK, map[string]any{"signingSecret": secret, "previousValidUntil": until})
}

// testResult is the answer of the test endpoint.
type testResult struct {
	WebhookID  string `json:"webhookId"`
	Outcome    string `json:"outcome"`
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"durationMs"`
	Note       string `json:"note,omitempty"`
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
	out := testResult{WebhookID: id, Outcome: res.Label(), Status: res.Status, Error: res.Class, DurationMs: res.Duration.Milliseconds()}
	if !st.Enabled {
		out.Note = "the config is disabled: its events are dead-lettered as endpoint_disabled until it is enabled again"
	}
	writeJSON(w, http.StatusOK, out)
}
