package admin

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// startRecovery starts a recovery job of a tenant config: its events of a
// time window of the input topics are sent again, with their webhook-ids.
// 202 with the job and a Location to poll; 404 for a config that does not
// exist (or another organisation's); 400 naming the field at fault.
func (a *api) startRecovery(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "recoveries are not configured", "")
		return
	}
	org, sb := r.PathValue("imsOrg"), r.PathValue("sandboxId")
	if _, err := a.store.Get(r.Context(), org, sb); err != nil {
		a.fail(w, err)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := replay.ParseRecovery(org, sb, body, time.Now())
	var reqErr *replay.RequestError
	if errors.As(err, &reqErr) {
		writeError(w, http.StatusBadRequest, "invalid_request", reqErr.Message, reqErr.Field)
		return
	}
	p, err := a.opts.Replays.Start(r.Context(), req)
	switch {
	case errors.As(err, &reqErr):
		writeError(w, http.StatusBadRequest, "invalid_request", reqErr.Message, reqErr.Field)
	case errors.Is(err, replay.ErrShuttingDown):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; try another", "")
	case err != nil:
		a.fail(w, err)
	default:
		a.log.Info("recovery started", "org", org, "sandbox", sb, "id", p.ID, "since", req.Since, "until", req.Until, "dry_run", req.DryRun)
		w.Header().Set("Location", recoveryPath(org, sb, p.ID))
		writeJSON(w, http.StatusAccepted, p)
	}
}

func recoveryPath(org, sb, id string) string {
	return "/v1/webhooks/" + org + "/" + sb + "/recoveries/" + id
}

// listRecoveries lists the config's recovery jobs of the last week,
// newest first (at most limit, default 20, up to 100).
func (a *api) listRecoveries(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "recoveries are not configured", "")
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a whole number from 1 to 100", "limit")
			return
		}
		limit = n
	}
	jobs, err := a.opts.Replays.Recoveries(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"), limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	if jobs == nil {
		jobs = []replay.Progress{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"recoveries": jobs})
}

// getRecovery reports a recovery job of the config; any other job is not
// found.
func (a *api) getRecovery(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "recoveries are not configured", "")
		return
	}
	p, err := a.opts.Replays.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, replay.ErrNoJob) || (err == nil && (p.Request.Source != replay.SourceInput ||
		p.Request.Org != r.PathValue("imsOrg") || p.Request.Sandbox != r.PathValue("sandboxId"))) {
		writeError(w, http.StatusNotFound, "not_found", "no such recovery job of this config", "")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
