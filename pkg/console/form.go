package console

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// headerRow is one custom header of the form.
type headerRow struct{ Name, Value string }

// form is the create/edit form: what it shows and what was posted. It
// holds no secret: key material and client secrets are write-only fields
// that are never filled in again.
type form struct {
	Edit                                 bool
	Org, SandboxID, SandboxName, Name    string
	Email, SMS                           bool
	URL                                  string
	AuthType                             string
	Algorithm, Issuer, Audience, Expires string
	KeyID                                string
	TokenURL, ClientID, Scope            string
	Headers                              []headerRow
	CampaignsAll                         bool
	Campaigns                            string // one id a line
	CampaignList                         []string
	Enabled                              bool
	DisabledReason                       string
	Orgs                                 []string // a tenant's organisations (create)
	Err                                  *apiError
}

// formFields are the API fields the form has an input for; an error on any
// other field is shown at the top of the form.
var formFields = []string{"imsOrg", "sandbox.id", "sandbox.name", "name", "channels", "url", "auth.type",
	"auth.algorithm", "auth.issuer", "auth.audience", "auth.expiresIn", "auth.privateKey", "auth.secret",
	"auth.tokenUrl", "auth.clientId", "auth.scope", "auth.clientSecret", "headers", "campaigns", "enabled"}

// matches reports whether the API's field is f or inside it (headers.X-Y,
// channels.0).
func matches(field, f string) bool {
	return field == f || strings.HasPrefix(field, f+".")
}

// ErrFor is the error message for the input of field f, if the API named
// it (or a part of it).
func (f *form) ErrFor(field string) string {
	if f.Err == nil || !matches(f.Err.Field, field) {
		return ""
	}
	if field == "headers" && f.Err.Field != "headers" {
		return strings.TrimPrefix(f.Err.Field, "headers.") + ": " + f.Err.Message
	}
	return f.Err.Message
}

// TopErr is the error no input of the form takes.
func (f *form) TopErr() *apiError {
	if f.Err == nil || slices.ContainsFunc(formFields, func(k string) bool { return matches(f.Err.Field, k) }) {
		return nil
	}
	return f.Err
}

// fromConfig fills the form from a config read from the API.
func fromConfig(c *webhook.Config) *form {
	f := &form{Edit: true, Org: c.Org, SandboxID: c.Sandbox.ID, SandboxName: c.Sandbox.Name, Name: c.Name, URL: c.URL,
		AuthType: c.Auth.Type, Algorithm: c.Auth.Algorithm, Issuer: c.Auth.Issuer, Audience: c.Auth.Audience,
		Expires: c.Auth.ExpiresIn, KeyID: c.Auth.KeyID, TokenURL: c.Auth.TokenURL, ClientID: c.Auth.ClientID,
		Scope: c.Auth.Scope, Enabled: c.Enabled, DisabledReason: c.DisabledReason}
	f.Email, f.SMS = slices.Contains(c.Channels, webhook.ChannelEmail), slices.Contains(c.Channels, webhook.ChannelSMS)
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f.Headers = append(f.Headers, headerRow{n, c.Headers[n]})
	}
	f.CampaignsAll = slices.Contains(c.Campaigns, webhook.AllCampaigns)
	if !f.CampaignsAll {
		f.CampaignList = c.Campaigns
		f.Campaigns = strings.Join(c.Campaigns, "\n")
	}
	return f
}

// parseForm reads a posted form; body is the config request it makes,
// with the write-only credentials given (empty ones left out, so an edit
// keeps the stored key).
func parseForm(r *http.Request) (*form, map[string]any) {
	v := r.PostForm
	f := &form{Org: strings.TrimSpace(v.Get("imsOrg")), SandboxID: strings.TrimSpace(v.Get("sandboxId")),
		SandboxName: strings.TrimSpace(v.Get("sandboxName")), Name: v.Get("name"), URL: strings.TrimSpace(v.Get("url")),
		AuthType: v.Get("authType"), Algorithm: v.Get("algorithm"), Issuer: v.Get("issuer"), Audience: v.Get("audience"),
		Expires: v.Get("expiresIn"), TokenURL: strings.TrimSpace(v.Get("tokenUrl")), ClientID: v.Get("clientId"),
		Scope: v.Get("scope"), Email: v.Get("email") != "", SMS: v.Get("sms") != "",
		CampaignsAll: v.Get("campaignsMode") != "list", Campaigns: v.Get("campaigns"), Enabled: v.Get("enabled") != ""}
	if f.AuthType == "" {
		f.AuthType = webhook.AuthNone
	}
	channels := []string{}
	if f.Email {
		channels = append(channels, webhook.ChannelEmail)
	}
	if f.SMS {
		channels = append(channels, webhook.ChannelSMS)
	}
	sandbox := map[string]any{"id": f.SandboxID}
	if f.SandboxName != "" {
		sandbox["name"] = f.SandboxName
	}
	body := map[string]any{"imsOrg": f.Org, "sandbox": sandbox, "name": f.Name, "channels": channels, "url": f.URL,
		"enabled": f.Enabled}
	auth := map[string]any{"type": f.AuthType}
	set := func(key, val string) {
		if val != "" {
			auth[key] = val
		}
	}
	switch f.AuthType {
	case webhook.AuthJWT:
		set("algorithm", f.Algorithm)
		set("issuer", f.Issuer)
		set("audience", f.Audience)
		set("expiresIn", f.Expires)
		set("privateKey", strings.TrimSpace(v.Get("privateKey")))
		set("secret", v.Get("jwtSecret"))
	case webhook.AuthOAuth2:
		set("tokenUrl", f.TokenURL)
		set("clientId", f.ClientID)
		set("scope", f.Scope)
		set("audience", f.Audience)
		set("clientSecret", v.Get("clientSecret"))
	}
	body["auth"] = auth
	names, values := v["headerName"], v["headerValue"]
	headers := map[string]any{}
	for i, n := range names {
		val := ""
		if i < len(values) {
			val = values[i]
		}
		n = strings.TrimSpace(n)
		if n == "" && val == "" {
			continue
		}
		f.Headers = append(f.Headers, headerRow{n, val})
		headers[n] = val
	}
	if len(headers) > 0 {
		body["headers"] = headers
	}
	if f.CampaignsAll {
		body["campaigns"] = []string{webhook.AllCampaigns}
	} else {
		ids := []string{}
		for _, id := range strings.FieldsFunc(f.Campaigns, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ' ' }) {
			ids = append(ids, id)
		}
		f.CampaignList = ids
		body["campaigns"] = ids
	}
	return f, body
}

// host is the host of a webhook URL, for the inventory.
func host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
