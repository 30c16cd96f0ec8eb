package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/deliverylog"
)

// record is one entry of a config's delivery log (an outcome record).
type record struct {
	Type              string    `json:"type"`
	Time              time.Time `json:"time"`
	WebhookID         string    `json:"webhookId"`
	EventID           string    `json:"eventId"`
	RequestID         string    `json:"requestId"`
	Channel           string    `json:"channel"`
	Status            string    `json:"feedbackStatus"`
	CampaignID        string    `json:"campaignID"`
	Outcome           string    `json:"outcome"`
	Reason            string    `json:"reason"`
	Attempt           int       `json:"attempt"`
	HTTPStatus        int       `json:"httpStatus"`
	DurationMs        *float64  `json:"durationMs"`
	ErrorClass        string    `json:"errorClass"`
	Response          string    `json:"response"`
	ResponseTruncated bool      `json:"responseTruncated"`
	RetryInMs         int64     `json:"retryInMs"`
	DisabledReason    string    `json:"disabledReason"`
	Source            string    `json:"source"`
}

// Kind is the record type without its "message." prefix.
func (r record) Kind() string { return strings.TrimPrefix(r.Type, "message.") }

// health is GET .../health's answer: the delivery log's health with what
// the API adds (pkg/admin's healthReport).
type health struct {
	Enabled        bool               `json:"enabled"`
	DisabledReason string             `json:"disabledReason"`
	Breaker        *admission.Breaker `json:"breaker"`
	deliverylog.Health
}

// logFilters are the delivery log's filters, as the API names them.
var logFilters = []string{"type", "outcome", "status", "httpStatus", "webhookId", "eventId", "requestId", "since", "until"}

type logData struct {
	Org, SandboxID, Name string
	Filter               map[string]string
	Records              []record
	Next                 string // the next page's URL, "" on the last
	Health               *health
	Err                  *apiError
}

// ErrFor is the error of the filter field f.
func (d logData) ErrFor(f string) string {
	if d.Err == nil || d.Err.Field != f {
		return ""
	}
	return d.Err.Message
}

// MessageLink is the console path of one webhook-id's timeline.
func (d logData) MessageLink(id string) string {
	return "/ui/webhooks/" + url.PathEscape(d.Org) + "/" + url.PathEscape(d.SandboxID) + "/messages/" + url.PathEscape(id)
}

// deliveryLog shows a config's attempts with the API's filters and paging,
// and its health summary.
func (c *Console) deliveryLog(w http.ResponseWriter, r *http.Request, s *session) {
	var cfg struct {
		Name string `json:"name"`
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r), nil, &cfg); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	d := logData{Org: r.PathValue("org"), SandboxID: r.PathValue("sb"), Name: cfg.Name, Filter: map[string]string{}}
	q := url.Values{}
	for _, f := range logFilters {
		if v := strings.TrimSpace(r.URL.Query().Get(f)); v != "" {
			d.Filter[f] = v
			q.Set(f, v)
		}
	}
	q.Set("limit", "50")
	for _, k := range []string{"cursor", "limit"} { // paging, as the API takes it
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	status := http.StatusOK
	var page struct {
		Records    []record `json:"records"`
		NextCursor string   `json:"nextCursor"`
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r, "attempts")+"?"+q.Encode(), nil, &page); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status == http.StatusNotFound || ae.Status == http.StatusUnauthorized || ae.Status >= 500 && ae.Status != http.StatusNotImplemented {
			c.apiFailed(w, r, s, err)
			return
		}
		d.Err, status = ae, ae.Status
	}
	d.Records = page.Records
	if page.NextCursor != "" {
		q.Set("cursor", page.NextCursor)
		// A whole URL: html/template escapes "=" and "&" of a query put
		// after a "?" in the template, which would lose the cursor.
		d.Next = "/ui/webhooks/" + url.PathEscape(d.Org) + "/" + url.PathEscape(d.SandboxID) + "/log?" + q.Encode()
	}
	var h health
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r, "health"), nil, &h); err == nil {
		d.Health = &h
	}
	c.render(w, status, s, "deliverylog", view{Title: "Delivery log of " + cfg.Name, Nav: "webhooks", Data: d})
}

type messageData struct {
	Org, SandboxID, WebhookID string
	Records                   []record
	Final                     *record
}

// message shows every record of one webhook-id, oldest first, and its
// final outcome.
func (c *Console) message(w http.ResponseWriter, r *http.Request, s *session) {
	var m struct {
		Records []record `json:"records"`
		Final   *record  `json:"final"`
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r, "messages", r.PathValue("id")), nil, &m); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	c.render(w, http.StatusOK, s, "message-timeline", view{Title: "Message " + r.PathValue("id"), Nav: "webhooks",
		Data: messageData{Org: r.PathValue("org"), SandboxID: r.PathValue("sb"), WebhookID: r.PathValue("id"), Records: m.Records, Final: m.Final}})
}
