package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// startReplay starts a replay job of dead letters (or finds it running):
// 202 with its progress and a Location to poll, 409 if it runs already. A
// token scoped to organisations replays only theirs.
func (a *api) startReplay(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "replays are not configured", "")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req replay.Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body is not a replay request: "+err.Error(), "")
		return
	}
	if p := principal(r); !p.Admin {
		switch {
		case req.Org == "" && len(p.Orgs) == 1:
			req.Org = p.Orgs[0]
		case req.Org == "":
			writeError(w, http.StatusBadRequest, "invalid_request", "this token covers several organisations: name one", "org")
			return
		case !p.Allows(req.Org):
			writeError(w, http.StatusForbidden, "forbidden", "this token may not replay that organisation's dead letters", "org")
			return
		}
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
	case errors.Is(err, replay.ErrShuttingDown):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; try another", "")
	case err != nil:
		a.fail(w, err)
	default:
		w.Header().Set("Location", "/v1/dlq/replays/"+p.ID)
		writeJSON(w, http.StatusAccepted, p)
	}
}

// listReplays lists the jobs of the last week, newest first (at most
// limit, default 20, up to 100); an org token sees its organisations' only.
func (a *api) listReplays(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "replays are not configured", "")
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
	jobs, err := a.opts.Replays.List(r.Context(), limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	p := principal(r)
	out := make([]replay.Progress, 0, len(jobs))
	for _, j := range jobs {
		if p.Admin || p.Allows(j.Request.Org) {
			out = append(out, j)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"replays": out})
}

// getReplay reports a job; another organisation's job is not found.
func (a *api) getReplay(w http.ResponseWriter, r *http.Request) {
	if a.opts.Replays == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "replays are not configured", "")
		return
	}
	p, err := a.opts.Replays.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, replay.ErrNoJob) || (err == nil && !principal(r).Admin && !principal(r).Allows(p.Request.Org)) {
		writeError(w, http.StatusNotFound, "not_found", replay.ErrNoJob.Error(), "")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
