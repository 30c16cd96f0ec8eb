// Package webhook defines a tenant's webhook config (one per organisation +
// sandbox), its validation, and the routing decision for an event.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/schemas"
)

// Channels a config can select.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// AllCampaigns in Campaigns enables every campaign.
const AllCampaigns = "*"

// AuthNone is the only auth type until JWT support lands.
const AuthNone = "none"

// Config is what tenants write through the admin API and what receivers'
// deliveries are built from. The JSON shape is schemas/webhook-config.schema.json.
type Config struct {
	Org       string            `json:"imsOrg"`
	Sandbox   Sandbox           `json:"sandbox"`
	Name      string            `json:"name"`
	Channels  []string          `json:"channels"`
	URL       string            `json:"url"`
	Auth      Auth              `json:"auth"`
	Headers   map[string]string `json:"headers,omitempty"`
	Campaigns []string          `json:"campaigns"`
	Enabled   bool              `json:"enabled"`

	// Read-only, maintained by feedbackd.
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
	DisabledReason string    `json:"disabledReason,omitempty"`
}

// Sandbox identifies the tenant's sandbox.
type Sandbox struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Auth is how feedbackd authenticates to the endpoint.
type Auth struct {
	Type string `json:"type"`
}

// Key is "<imsOrg>/<sandboxId>", the config's identity and Kafka key.
func (c *Config) Key() string { return Key(c.Org, c.Sandbox.ID) }

// Key builds a config key.
func Key(org, sandboxID string) string { return org + "/" + sandboxID }

// Stored is a config with its secret, as kept in feedback.configs and Redis.
// It must never be returned by the API or logged: use Config for that.
type Stored struct {
	Config
	Secret string `json:"signingSecret"`
}

// FieldError is a validation failure of one field, named by its JSON path.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Policy holds the deployment's rules for endpoint URLs.
type Policy struct {
	AllowHTTP bool
	Guard     *netguard.Guard // nil: public addresses only
}

var configSchema = schemas.MustCompile(schemas.WebhookConfig)

// reservedHeaders are set by feedbackd and cannot come from a config.
var reservedHeaders = []string{
	"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length",
	"host", "user-agent", "authorization", "connection", "transfer-encoding", "te", "trailer",
	"upgrade", "keep-alive", "proxy-authorization", "proxy-connection", "expect", "cookie",
}

// Decode parses and validates an API request body. Fields missing from the
// body get their defaults: auth none, campaigns ["*"], enabled true. Errors
// are *FieldError. ctx bounds the DNS lookup of the URL's host.
func Decode(ctx context.Context, body []byte, p Policy) (*Config, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, &FieldError{Field: "", Message: "body is not valid JSON: " + err.Error()}
	}
	if err := configSchema.Validate(doc); err != nil {
		return nil, schemaFieldError(err)
	}
	c := &Config{Auth: Auth{Type: AuthNone}, Campaigns: []string{AllCampaigns}, Enabled: true}
	if err := json.Unmarshal(body, c); err != nil {
		return nil, &FieldError{Message: err.Error()}
	}
	c.CreatedAt, c.UpdatedAt, c.DisabledReason = time.Time{}, time.Time{}, ""
	if err := c.Validate(ctx, p); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the rules the schema cannot express.
func (c *Config) Validate(ctx context.Context, p Policy) error {
	if c.Auth.Type != AuthNone {
		return &FieldError{Field: "auth.type", Message: fmt.Sprintf("%q is not supported yet; use \"none\"", c.Auth.Type)}
	}
	if err := validateURL(ctx, c.URL, p); err != nil {
		return &FieldError{Field: "url", Message: err.Error()}
	}
	for name, value := range c.Headers {
		if !validHeaderName(name) {
			return &FieldError{Field: "headers." + name, Message: "is not a valid HTTP header name (1 to 128 token characters)"}
		}
		if slices.Contains(reservedHeaders, strings.ToLower(name)) || strings.HasPrefix(strings.ToLower(name), "webhook-") {
			return &FieldError{Field: "headers." + name, Message: "is reserved and set by feedbackd"}
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return &FieldError{Field: "headers." + name, Message: "value must not contain CR, LF or NUL"}
		}
	}
	if slices.Contains(c.Campaigns, AllCampaigns) && len(c.Campaigns) > 1 {
		return &FieldError{Field: "campaigns", Message: `"*" enables every campaign and cannot be combined with ids`}
	}
	return nil
}

func validateURL(ctx context.Context, raw string, p Policy) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTP:
	case u.Scheme == "http":
		return errors.New("must be https:// (plain http is allowed only with delivery.allow_http)")
	case p.AllowHTTP:
		return errors.New("must be an absolute https:// or http:// URL")
	default:
		return errors.New("must be an absolute https:// URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not contain credentials; use headers or auth instead")
	}
	if u.Fragment != "" {
		return errors.New("must not contain a fragment")
	}
	if port := u.Port(); port == "0" {
		return errors.New("has port 0")
	}
	g := p.Guard
	if g == nil {
		g = &netguard.Guard{}
	}
	var blocked *netguard.BlockedError
	if err := g.CheckHost(ctx, u.Hostname()); errors.As(err, &blocked) {
		return fmt.Errorf("points to a %s address (allowed only with delivery.allow_private_networks or delivery.allowed_cidrs)", blocked.Reason)
	}
	return nil
}

func schemaFieldError(err error) error {
	field, _, msg := schemas.Explain(err)
	return &FieldError{Field: field, Message: msg}
}

func validHeaderName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
