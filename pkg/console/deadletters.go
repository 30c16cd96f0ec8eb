package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

// deadLetter is one dead letter as GET /v1/dlq reports it.
type deadLetter struct{ dlq.Entry }

// Link is the console path of the dead letter's page.
func (d deadLetter) Link() string {
	parts := strings.Split(d.DeadLetter, "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return "/ui/dlq/" + strings.Join(parts, "/")
}

type dlqList struct {
	Stats struct {
		Total     int            `json:"total"`
		ByReason  map[string]int `json:"byReason"`
		ByChannel map[string]int `json:"byChannel"`
		ByOrg     map[string]int `json:"byOrg"`
		ByAge     map[string]int `json:"byAge"`
		Oldest    time.Time      `json:"oldest"`
		Newest    time.Time      `json:"newest"`
	} `json:"stats"`
	DeadLetters []deadLetter `json:"deadLetters"`
	Truncated   bool         `json:"truncated"`
}

// dlqFilters are the dead-letter filters of the list and replay forms.
var dlqFilters = []string{"org", "sandbox", "channel", "status", "reason", "since", "until"}

type dlqData struct {
	Filter  map[string]string
	List    *dlqList
	Err     *apiError
	Replays []replay.Progress
}

// ErrFor is the error of the filter field f.
func (d dlqData) ErrFor(f string) string {
	if d.Err == nil || d.Err.Field != f {
		return ""
	}
	return d.Err.Message
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, s *session) {
	d := dlqData{Filter: map[string]string{}}
	q := url.Values{}
	for _, f := range dlqFilters {
		if v := strings.TrimSpace(r.URL.Query().Get(f)); v != "" {
			d.Filter[f] = v
			q.Set(f, v)
		}
	}
	c.dlqPage(w, r, s, q, d)
}

func (c *Console) dlqPage(w http.ResponseWriter, r *http.Request, s *session, q url.Values, d dlqData) {
	status := http.StatusOK
	q.Set("limit", "100")
	var list dlqList
	if _, err := c.call(r.Context(), s, http.MethodGet, "/v1/dlq?"+q.Encode(), nil, &list); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusUnauthorized {
			c.apiFailed(w, r, s, err)
			return
		}
		if d.Err == nil {
			d.Err, status = ae, ae.Status
		}
	} else {
		d.List = &list
	}
	var jobs struct {
		Replays []replay.Progress `json:"replays"`
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, "/v1/dlq/replays?limit=10", nil, &jobs); err == nil {
		d.Replays = jobs.Replays
	}
	if d.Err != nil && status == http.StatusOK {
		status = d.Err.Status
	}
	c.render(w, status, s, "dlq", view{Title: "Dead letters", Nav: "dlq", Data: d})
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request, s *session) {
	_, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	_, err2 := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err != nil || err2 != nil {
		c.notFound(w, r, s)
		return
	}
	at := r.PathValue("topic") + "/" + r.PathValue("partition") + "/" + r.PathValue("offset")
	var list dlqList
	if _, err := c.call(r.Context(), s, http.MethodGet, "/v1/dlq?limit=1&deadLetter="+url.QueryEscape(at), nil, &list); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	if len(list.DeadLetters) == 0 {
		c.notFound(w, r, s)
		return
	}
	c.render(w, http.StatusOK, s, "deadletter", view{Title: "Dead letter " + at, Nav: "dlq", Data: list.DeadLetters[0]})
}

// rate is the form's rate as the API takes it: a number, or the text as
// typed so that the API names the field.
func rate(v string) any {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	return v
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	d := dlqData{Filter: map[string]string{}}
	body := map[string]any{}
	q := url.Values{}
	for _, f := range dlqFilters {
		if v := strings.TrimSpace(r.PostFormValue(f)); v != "" {
			d.Filter[f], body[f] = v, v
			q.Set(f, v)
		}
	}
	body["dryRun"] = r.PostFormValue("dryRun") != ""
	if v := rate(r.PostFormValue("rate")); v != nil {
		body["rate"] = v
	}
	var out struct {
		replay.Progress
		Replay *replay.Progress `json:"replay"`
	}
	_, err := c.call(r.Context(), s, http.MethodPost, "/v1/dlq/replays", body, &out)
	var ae *apiError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.Code == "running" && out.Replay != nil:
		out.Progress = *out.Replay // the same request runs already: follow it
	case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusNotFound:
		d.Err = ae
		c.dlqPage(w, r, s, q, d)
		return
	default:
		c.apiFailed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/replays/"+url.PathEscape(out.ID), http.StatusSeeOther)
}

type jobData struct {
	Job      replay.Progress
	Poll     string // the JSON the page's script polls
	Back     string
	Recovery bool
}

func (c *Console) replayPage(w http.ResponseWriter, r *http.Request, s *session) {
	var p replay.Progress
	if _, err := c.call(r.Context(), s, http.MethodGet, apiPath("v1", "dlq", "replays", r.PathValue("id")), nil, &p); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	c.render(w, http.StatusOK, s, "job", view{Title: "Replay " + p.ID, Nav: "dlq",
		Data: jobData{Job: p, Poll: "/ui/progress/replays/" + url.PathEscape(p.ID), Back: "/ui/dlq"}})
}

// progressJSON answers the job's progress for the page's script: only the
// counts and the state it shows.
func (c *Console) progressJSON(w http.ResponseWriter, r *http.Request, s *session, target string) {
	var p replay.Progress
	if _, err := c.call(r.Context(), s, http.MethodGet, target, nil, &p); err != nil {
		var ae *apiError
		status := http.StatusInternalServerError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"state": p.State, "total": p.Total, "scanned": p.Scanned,
		"matched": p.Matched, "replayed": p.Replayed, "skipped": p.Skipped, "error": p.Error})
}

func (c *Console) replayProgress(w http.ResponseWriter, r *http.Request, s *session) {
	c.progressJSON(w, r, s, apiPath("v1", "dlq", "replays", r.PathValue("id")))
}

func (c *Console) recoveryProgress(w http.ResponseWriter, r *http.Request, s *session) {
	c.progressJSON(w, r, s, configAPIPath(r, "recoveries", r.PathValue("id")))
}

func (c *Console) startRecovery(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{"since": strings.TrimSpace(r.PostFormValue("since")), "until": strings.TrimSpace(r.PostFormValue("until")),
		"dryRun": r.PostFormValue("dryRun") != ""}
	if v := rate(r.PostFormValue("rate")); v != nil {
		body["rate"] = v
	}
	var p replay.Progress
	if _, err := c.call(r.Context(), s, http.MethodPost, configAPIPath(r, "recover"), body, &p); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			c.editPage(w, r, s, http.StatusBadRequest, editData{RecoverErr: ae, RecoverSince: body["since"].(string), RecoverUntil: body["until"].(string)})
			return
		}
		c.apiFailed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/webhooks/"+url.PathEscape(r.PathValue("org"))+"/"+url.PathEscape(r.PathValue("sb"))+"/recoveries/"+url.PathEscape(p.ID), http.StatusSeeOther)
}

func (c *Console) recovery(w http.ResponseWriter, r *http.Request, s *session) {
	var p replay.Progress
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r, "recoveries", r.PathValue("id")), nil, &p); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	back := "/ui/webhooks/" + url.PathEscape(r.PathValue("org")) + "/" + url.PathEscape(r.PathValue("sb"))
	c.render(w, http.StatusOK, s, "job", view{Title: "Recovery " + p.ID, Nav: "webhooks", Data: jobData{Job: p, Recovery: true, Back: back,
		Poll: "/ui/progress/recoveries/" + url.PathEscape(r.PathValue("org")) + "/" + url.PathEscape(r.PathValue("sb")) + "/" + url.PathEscape(p.ID)}})
}
