package console

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/replay"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// view is what every page template gets.
type view struct {
	Title string
	Nav   string
	CSRF  string // empty when signed out
	Who   string
	Admin bool
	Data  any
}

var funcs = template.FuncMap{
	"host": host,
	"join": strings.Join,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"esc": url.PathEscape,
	"pct": func(f *float64) string {
		if f == nil {
			return "-"
		}
		return strconv.FormatFloat(*f*100, 'f', 1, 64) + "%"
	},
	"ms": func(f *float64) string {
		if f == nil {
			return "-"
		}
		return strconv.FormatFloat(*f, 'f', 1, 64) + " ms"
	},
	"list": func(v ...any) []any { return v },
	"json": func(v any) string {
		if s, ok := v.(string); ok { // a value that is not JSON, as it is
			return s
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return ""
		}
		return string(b)
	},
}

// parsePages parses each page with the layout; a broken template is a
// programming error caught by every test.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	names, err := fs.Glob(assets, "assets/templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "parts" { // they go with every page
			continue
		}
		pages[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets,
			"assets/templates/layout.html", "assets/templates/parts.html", n))
	}
	return pages
}

// render writes a page; a template failure is logged and answered 500
// before anything was written.
func (c *Console) render(w http.ResponseWriter, status int, s *session, name string, v view) {
	if s != nil {
		v.CSRF, v.Admin = s.csrf, s.who.Admin
		v.Who = "admin"
		if !s.who.Admin {
			v.Who = strings.Join(s.who.Orgs, ", ")
		}
	}
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, v); err != nil {
		c.log.Error("console page failed", "page", name, "error", err)
		http.Error(w, "internal error; see feedbackd logs", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

type message struct{ Heading, Text string }

func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, heading, text string) {
	c.render(w, status, c.session(r), "message", view{Title: heading, Data: message{heading, text}})
}

// notFound is the answer for a page that does not exist or belongs to an
// organisation the session may not see: the two look the same.
func (c *Console) notFound(w http.ResponseWriter, r *http.Request, _ *session) {
	c.renderStatus(w, r, http.StatusNotFound, "Not found", "There is no such page, or it belongs to an organisation you cannot see.")
}

// apiFailed renders an API error that no form takes.
func (c *Console) apiFailed(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		c.log.Error("console request failed", "path", r.URL.Path, "error", err)
		c.render(w, http.StatusInternalServerError, s, "message", view{Title: "Error", Data: message{"Error", "Internal error; see feedbackd logs."}})
		return
	}
	if ae.Status == http.StatusNotFound {
		c.notFound(w, r, s)
		return
	}
	if ae.Status == http.StatusUnauthorized { // the token expired: the session is over
		c.endSession(w, s)
		http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
		return
	}
	c.render(w, ae.Status, s, "message", view{Title: "Error", Data: message{"Error", ae.Error()}})
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if c.session(r) == nil {
		http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/webhooks", http.StatusSeeOther)
}

type signinData struct{ Error string }

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, http.StatusOK, nil, "signin", view{Title: "Sign in"})
}

// signin exchanges a token for a session. The token is checked by the
// admin API's verifier; it is never echoed back.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	who, err := c.opts.Auth.Verify(token)
	if err != nil {
		c.log.Info("console sign-in refused")
		c.render(w, http.StatusUnauthorized, nil, "signin", view{Title: "Sign in",
			Data: signinData{"That token is not valid (wrong, expired, or without an admin or org: scope)."}})
		return
	}
	if old := c.session(r); old != nil {
		c.endSession(w, old)
	}
	c.startSession(w, token, who)
	http.Redirect(w, r, "/ui/webhooks", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	c.endSession(w, s)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

// row is one config of the inventory.
type row struct {
	*webhook.Config
	Host        string
	SuccessRate *float64 // of the last day; nil: no attempts or no delivery log
}

type inventoryData struct {
	Rows           []row
	Total          int
	Q, State, Sort string
}

func (c *Console) inventory(w http.ResponseWriter, r *http.Request, s *session) {
	var list struct {
		Webhooks     []*webhook.Config `json:"webhooks"`
		SuccessRates []struct {
			LastDay *float64 `json:"lastDay"`
		} `json:"successRates"` // in the order of Webhooks; absent without a delivery log
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, "/v1/webhooks?include=successRate", nil, &list); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	q := r.URL.Query()
	d := inventoryData{Total: len(list.Webhooks), Q: strings.TrimSpace(q.Get("q")), State: q.Get("state"), Sort: q.Get("sort")}
	needle := strings.ToLower(d.Q)
	for i, cfg := range list.Webhooks {
		rw := row{Config: cfg, Host: host(cfg.URL)}
		text := strings.ToLower(strings.Join([]string{cfg.Org, cfg.Name, cfg.Sandbox.ID, cfg.Sandbox.Name, rw.Host, cfg.Auth.Type}, " "))
		switch {
		case needle != "" && !strings.Contains(text, needle),
			d.State == "enabled" && !cfg.Enabled,
			d.State == "disabled" && cfg.Enabled:
			continue
		}
		if i < len(list.SuccessRates) {
			rw.SuccessRate = list.SuccessRates[i].LastDay
		}
		d.Rows = append(d.Rows, rw)
	}
	slices.SortStableFunc(d.Rows, func(a, b row) int {
		switch d.Sort {
		case "sandbox":
			return cmp.Or(cmp.Compare(a.Sandbox.ID, b.Sandbox.ID), cmp.Compare(a.Org, b.Org))
		case "updated":
			return b.UpdatedAt.Compare(a.UpdatedAt)
		case "success":
			return cmp.Compare(known(a.SuccessRate), known(b.SuccessRate))
		case "host":
			return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Name, b.Name))
		default:
			return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.Org, b.Org))
		}
	})
	c.render(w, http.StatusOK, s, "inventory", view{Title: "Feedback webhook configurations", Nav: "webhooks", Data: d})
}

func (c *Console) newForm(w http.ResponseWriter, r *http.Request, s *session) {
	f := &form{AuthType: webhook.AuthNone, Email: true, CampaignsAll: true, Enabled: true, Orgs: s.who.Orgs}
	if len(s.who.Orgs) == 1 && !s.who.Admin {
		f.Org = s.who.Orgs[0]
	}
	c.render(w, http.StatusOK, s, "form", view{Title: "Create feedback webhook", Nav: "webhooks", Data: f})
}

// created is the one page that shows secret material: the answer to a
// create, a secret rotation or a key rotation, never stored or shown again.
type created struct {
	Org, SandboxID, Name string
	What                 string
	SigningSecret        string          `json:"signingSecret"`
	JWTSecret            string          `json:"jwtSecret"`
	KeyID                string          `json:"keyId"`
	JWK                  json.RawMessage `json:"jwk"`
	PreviousValidUntil   time.Time       `json:"previousValidUntil"`
}

func (d created) JWKText() string {
	if len(d.JWK) == 0 {
		return ""
	}
	var b bytes.Buffer
	_ = json.Indent(&b, d.JWK, "", "  ")
	return b.String()
}

func (c *Console) create(w http.ResponseWriter, r *http.Request, s *session) {
	f, body := parseForm(r)
	f.Orgs = s.who.Orgs
	var out created
	if _, err := c.call(r.Context(), s, http.MethodPost, "/v1/webhooks", body, &out); err != nil {
		if !errors.As(err, &f.Err) {
			c.apiFailed(w, r, s, err)
			return
		}
		c.render(w, f.Err.Status, s, "form", view{Title: "Create feedback webhook", Nav: "webhooks", Data: f})
		return
	}
	out.Org, out.SandboxID, out.Name, out.What = f.Org, f.SandboxID, f.Name, "created"
	c.render(w, http.StatusCreated, s, "secret", view{Title: "Webhook created", Nav: "webhooks", Data: out})
}

// editData is the edit page: the form and what the page's other actions
// showed (a test's outcome, a campaign change's error).
type editData struct {
	*form
	Saved                      bool
	Test                       *testResult
	ActionErr                  string
	Recoveries                 []replay.Progress
	RecoverErr                 *apiError
	RecoverSince, RecoverUntil string
}

// RecoverErrFor is the recovery form's error for field f.
func (d editData) RecoverErrFor(f string) string {
	if d.RecoverErr == nil || !matches(d.RecoverErr.Field, f) {
		return ""
	}
	return d.RecoverErr.Message
}

type testResult struct {
	WebhookID  string `json:"webhookId"`
	Outcome    string `json:"outcome"`
	Status     int    `json:"status"`
	Error      string `json:"error"`
	DurationMs int64  `json:"durationMs"`
	Note       string `json:"note"`
}

// editPage reads the config and renders the edit page around d.
func (c *Console) editPage(w http.ResponseWriter, r *http.Request, s *session, status int, d editData) {
	var cfg webhook.Config
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r), nil, &cfg); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	if d.form == nil {
		d.form = fromConfig(&cfg)
	} else {
		d.CampaignList, d.KeyID, d.DisabledReason = cfg.Campaigns, cfg.Auth.KeyID, cfg.DisabledReason
		if slices.Contains(cfg.Campaigns, webhook.AllCampaigns) {
			d.CampaignList = nil
		}
	}
	var recs struct {
		Recoveries []replay.Progress `json:"recoveries"`
	}
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r, "recoveries")+"?limit=5", nil, &recs); err == nil {
		d.Recoveries = recs.Recoveries
	}
	c.render(w, status, s, "edit", view{Title: cfg.Name, Nav: "webhooks", Data: d})
}

func (c *Console) editForm(w http.ResponseWriter, r *http.Request, s *session) {
	c.editPage(w, r, s, http.StatusOK, editData{Saved: r.URL.Query().Get("saved") != ""})
}

func (c *Console) save(w http.ResponseWriter, r *http.Request, s *session) {
	f, body := parseForm(r)
	f.Edit = true
	// The path names the config: its org and sandbox are not edited.
	f.Org, f.SandboxID = r.PathValue("org"), r.PathValue("sb")
	body["imsOrg"] = f.Org
	body["sandbox"].(map[string]any)["id"] = f.SandboxID
	if _, err := c.call(r.Context(), s, http.MethodPut, configAPIPath(r), body, nil); err != nil {
		if !errors.As(err, &f.Err) || f.Err.Status == http.StatusNotFound || f.Err.Status == http.StatusUnauthorized {
			c.apiFailed(w, r, s, err)
			return
		}
		c.editPage(w, r, s, f.Err.Status, editData{form: f})
		return
	}
	http.Redirect(w, r, "/ui/webhooks/"+url.PathEscape(f.Org)+"/"+url.PathEscape(f.SandboxID)+"?saved=1", http.StatusSeeOther)
}

func (c *Console) deleteConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	var cfg webhook.Config
	if _, err := c.call(r.Context(), s, http.MethodGet, configAPIPath(r), nil, &cfg); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	c.render(w, http.StatusOK, s, "delete", view{Title: "Delete " + cfg.Name, Nav: "webhooks", Data: &cfg})
}

func (c *Console) remove(w http.ResponseWriter, r *http.Request, s *session) {
	if _, err := c.call(r.Context(), s, http.MethodDelete, configAPIPath(r), nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/webhooks?deleted=1", http.StatusSeeOther)
}

func (c *Console) test(w http.ResponseWriter, r *http.Request, s *session) {
	var res testResult
	if _, err := c.call(r.Context(), s, http.MethodPost, configAPIPath(r, "test"), nil, &res); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	c.editPage(w, r, s, http.StatusOK, editData{Test: &res})
}

func (c *Console) rotateSecret(w http.ResponseWriter, r *http.Request, s *session) {
	var out created
	if _, err := c.call(r.Context(), s, http.MethodPost, configAPIPath(r, "rotate-secret"), nil, &out); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	out.Org, out.SandboxID, out.What = r.PathValue("org"), r.PathValue("sb"), "secret"
	c.render(w, http.StatusOK, s, "secret", view{Title: "New signing secret", Nav: "webhooks", Data: out})
}

func (c *Console) rotateKey(w http.ResponseWriter, r *http.Request, s *session) {
	var out created
	if _, err := c.call(r.Context(), s, http.MethodPost, configAPIPath(r, "rotate-key"), nil, &out); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			c.editPage(w, r, s, http.StatusConflict, editData{ActionErr: ae.Message})
			return
		}
		c.apiFailed(w, r, s, err)
		return
	}
	out.Org, out.SandboxID, out.What = r.PathValue("org"), r.PathValue("sb"), "key"
	c.render(w, http.StatusOK, s, "secret", view{Title: "New JWT key", Nav: "webhooks", Data: out})
}

// campaign enables or disables one campaign through the campaign routes.
func (c *Console) campaign(w http.ResponseWriter, r *http.Request, s *session) {
	id := strings.TrimSpace(r.PostFormValue("campaignId"))
	switch id {
	case "":
		c.editPage(w, r, s, http.StatusBadRequest, editData{ActionErr: "campaignId: enter a campaign id"})
		return
	case ".", "..": // the API's pattern takes them, but no path can name them
		c.editPage(w, r, s, http.StatusBadRequest, editData{ActionErr: "campaignId: . and .. are not campaign ids"})
		return
	}
	method := http.MethodPut
	if r.PostFormValue("action") == "disable" {
		method = http.MethodDelete
	}
	if _, err := c.call(r.Context(), s, method, configAPIPath(r, "campaigns", id), nil, nil); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
			c.editPage(w, r, s, ae.Status, editData{ActionErr: ae.Message})
			return
		}
		c.apiFailed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/webhooks/"+url.PathEscape(r.PathValue("org"))+"/"+url.PathEscape(r.PathValue("sb"))+"#campaigns", http.StatusSeeOther)
}

// known orders configs without a success rate first, as the least known.
func known(f *float64) float64 {
	if f == nil {
		return -1
	}
	return *f
}
