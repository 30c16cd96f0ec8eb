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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
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

// Auth types.
const (
	AuthNone   = "none"
	AuthJWT    = "jwt"    // a JWT feedbackd signs for each delivery
	AuthOAuth2 = "oauth2" // an access token from the tenant's token endpoint
)

// Defaults and bounds of JWT auth.
const (
	DefaultJWTTTL = 5 * time.Minute
	maxJWTTTL     = time.Hour
	maxClaimBytes = 4 << 10
)

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

// Auth is how feedbackd authenticates to the endpoint: its public part.
// Key material and client secrets are Credentials: they are never part of
// a Config, so a Config can be shown and logged.
type Auth struct {
	Type string `json:"type"`
	// jwt
	Algorithm string         `json:"algorithm,omitempty"` // HS256, RS256, ES256, EdDSA
	Issuer    string         `json:"issuer,omitempty"`    // iss; default feedbackd
	ExpiresIn string         `json:"expiresIn,omitempty"` // token lifetime; default 5m
	Claims    map[string]any `json:"claims,omitempty"`    // added to every token
	KeyID     string         `json:"keyId,omitempty"`     // read-only: the kid tokens are signed with
	// jwt and oauth2
	Audience string `json:"audience,omitempty"`
	// oauth2
	TokenURL string `json:"tokenUrl,omitempty"`
	ClientID string `json:"clientId,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// TTL is the JWT lifetime.
func (a Auth) TTL() time.Duration {
	if d, err := time.ParseDuration(a.ExpiresIn); err == nil && d > 0 {
		return d
	}
	return DefaultJWTTTL
}

// Credentials are the write-only parts of a config request's auth. They
// move into Stored; they are never returned.
type Credentials struct {
	PrivateKey   string // jwt RS256/ES256/EdDSA: PKCS#8 (or PKCS#1/SEC 1) PEM
	Secret       string // jwt HS256: the shared secret
	ClientSecret string // oauth2
}

// Key is "<imsOrg>/<sandboxId>", the config's identity and Kafka key.
func (c *Config) Key() string { return Key(c.Org, c.Sandbox.ID) }

// Key builds a config key.
func Key(org, sandboxID string) string { return org + "/" + sandboxID }

// Stored is a config with its secret material, as kept in feedback.configs
// and Redis (where configstore encrypts the secret fields). It must never
// be returned by the API or logged: use Config for that.
type Stored struct {
	Config
	// Secrets sign webhooks, newest first. Every one not past its NotAfter
	// signs each delivery: during a rotation, receivers holding either
	// secret can verify.
	Secrets []Secret `json:"signingSecrets"`
	// JWTKeys sign endpoint JWTs (auth.type jwt), newest first; the newest
	// signs, older ones stay in the JWKS until their NotAfter so tokens
	// signed with them still verify.
	JWTKeys []JWTKey `json:"jwtKeys,omitempty"`
	// ClientSecret of auth.type oauth2.
	ClientSecret string `json:"clientSecret,omitempty"`
}

// Secret is a signing secret (whsec_...). A zero NotAfter never expires.
type Secret struct {
	Value    string    `json:"value"`
	NotAfter time.Time `json:"notAfter,omitzero"`
}

// JWTKey is key material for endpoint JWTs (see endpointauth.GenerateKey).
type JWTKey struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	Material  string    `json:"material"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
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

// readOnlyFields are set by feedbackd; a request body's are ignored.
var readOnlyFields = []string{"createdAt", "updatedAt", "disabledReason"}

// MaxCampaigns is the longest campaign list a config holds (the schema's
// maxItems).
const MaxCampaigns = 1000

// reservedHeaders are set by feedbackd and cannot come from a config.
var reservedHeaders = []string{
	"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length",
	"host", "user-agent", "authorization", "connection", "transfer-encoding", "te", "trailer",
	"upgrade", "keep-alive", "proxy-authorization", "proxy-connection", "expect", "cookie",
}

// Decode parses and validates an API request body into the config and the
// credentials it carries. Fields missing from the body get their defaults:
// auth none, campaigns ["*"], enabled true. Errors are *FieldError and
// never quote a credential. ctx bounds DNS lookups of the URLs' hosts.
func Decode(ctx context.Context, body []byte, p Policy) (*Config, Credentials, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, Credentials{}, &FieldError{Field: "", Message: "body is not valid JSON: " + err.Error()}
	}
	if m, ok := doc.(map[string]any); ok && slices.ContainsFunc(readOnlyFields, func(f string) bool { _, ok := m[f]; return ok }) {
		// Read-only fields are ignored whatever they hold, so a config read
		// with GET can be edited and PUT back as it is.
		for _, f := range readOnlyFields {
			delete(m, f)
		}
		body, _ = json.Marshal(m)
	}
	if err := configSchema.Validate(doc); err != nil {
		return nil, Credentials{}, schemaFieldError(err)
	}
	c := &Config{Auth: Auth{Type: AuthNone}, Campaigns: []string{AllCampaigns}, Enabled: true}
	if err := json.Unmarshal(body, c); err != nil {
		return nil, Credentials{}, &FieldError{Message: err.Error()}
	}
	var creds struct {
		Auth struct {
			PrivateKey   string `json:"privateKey"`
			Secret       string `json:"secret"`
			ClientSecret string `json:"clientSecret"`
		} `json:"auth"`
	}
	_ = json.Unmarshal(body, &creds) // the schema checked the shape
	cr := Credentials{PrivateKey: creds.Auth.PrivateKey, Secret: creds.Auth.Secret, ClientSecret: creds.Auth.ClientSecret}
	c.Auth.KeyID = "" // read-only too
	if err := c.Validate(ctx, p); err != nil {
		return nil, Credentials{}, err
	}
	if err := cr.validate(c.Auth); err != nil {
		return nil, Credentials{}, err
	}
	return c, cr, nil
}

// Validate checks the rules the schema cannot express.
func (c *Config) Validate(ctx context.Context, p Policy) error {
	if err := validateURL(ctx, c.URL, p); err != nil {
		return &FieldError{Field: "url", Message: err.Error()}
	}
	if err := c.Auth.validate(ctx, p); err != nil {
		return err
	}
	for name, value := range c.Headers {
		if !validHeaderName(name) {
			return &FieldError{Field: "headers." + name, Message: "is not a valid HTTP header name (1 to 128 token characters)"}
		}
		if slices.Contains(reservedHeaders, strings.ToLower(name)) || strings.HasPrefix(strings.ToLower(name), "webhook-") {
			return &FieldError{Field: "headers." + name, Message: "is reserved and set by feedbackd"}
		}
		if !ValidHeaderValue(value) {
			return &FieldError{Field: "headers." + name, Message: "value must not contain control characters (CR, LF, NUL, ESC, DEL...); a tab is allowed"}
		}
	}
	return ValidateCampaigns(c.Campaigns)
}

// ValidateCampaigns checks the rules of a campaign list beyond each id's
// pattern: the campaign routes change a stored list and check it here.
func ValidateCampaigns(campaigns []string) error {
	if slices.Contains(campaigns, AllCampaigns) && len(campaigns) > 1 {
		return &FieldError{Field: "campaigns", Message: `"*" enables every campaign and cannot be combined with ids`}
	}
	if len(campaigns) > MaxCampaigns {
		return &FieldError{Field: "campaigns", Message: fmt.Sprintf("holds at most %d campaign ids", MaxCampaigns)}
	}
	for i, id := range campaigns {
		if id == "." || id == ".." { // they could not be named in a URL path (/campaigns/{campaignId})
			return &FieldError{Field: fmt.Sprintf("campaigns.%d", i), Message: `"." and ".." are not campaign ids`}
		}
	}
	return nil
}

// ValidHeaderValue reports whether v can be sent as a header value: no
// control character but tab. The delivery transport refuses exactly the
// values this refuses.
func ValidHeaderValue[T string | []byte](v T) bool {
	for i := range len(v) {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// CheckRequestable says why u cannot be the target of a webhook POST, or
// returns nil: http or https with a host in ASCII (an internationalized
// name in its xn-- form), a port from 1 to 65535 if any, and a query
// without spaces or control characters (the path is escaped when sent).
// The delivery transport refuses exactly the URLs this refuses.
func CheckRequestable(u *url.URL) error {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an absolute https:// URL")
	case u.Hostname() == "":
		return errors.New("has no host")
	case strings.ContainsFunc(u.Host, func(r rune) bool { return r >= utf8.RuneSelf }):
		return errors.New("host must be ASCII: write an internationalized domain name in its xn-- form")
	case u.Port() != "" && !validPort(u.Port()):
		return errors.New("has an invalid port: want 1 to 65535")
	case !inRequestLine(u.RawQuery) || !inRequestLine(u.Opaque):
		return errors.New("must not contain spaces or control characters: percent-encode them")
	}
	return nil
}

// validPort reports whether p is a port from 1 to 65535 in decimal,
// without leading zeros.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0' && p[0] != '+'
}

// inRequestLine reports whether s can stand in an HTTP request line as it
// is: printable ASCII, no space.
func inRequestLine(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
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
	if err := CheckRequestable(u); err != nil {
		return err
	}
	if u.User != nil {
		return errors.New("must not contain credentials; use headers or auth instead")
	}
	if u.Fragment != "" {
		return errors.New("must not contain a fragment")
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

func (a Auth) validate(ctx context.Context, p Policy) error {
	switch a.Type {
	case AuthNone:
	case AuthJWT:
		if !slices.Contains(endpointauth.Algorithms, a.Algorithm) {
			return &FieldError{Field: "auth.algorithm", Message: "must be one of " + strings.Join(endpointauth.Algorithms, ", ")}
		}
		if a.ExpiresIn != "" {
			d, err := time.ParseDuration(a.ExpiresIn)
			if err != nil || d < 10*time.Second || d > maxJWTTTL {
				return &FieldError{Field: "auth.expiresIn", Message: "must be a duration from 10s to 1h, like 5m"}
			}
		}
		for k := range a.Claims {
			if slices.Contains(endpointauth.ReservedClaims, k) {
				return &FieldError{Field: "auth.claims." + k, Message: "is set by feedbackd"}
			}
		}
		if b, _ := json.Marshal(a.Claims); len(b) > maxClaimBytes {
			return &FieldError{Field: "auth.claims", Message: fmt.Sprintf("are over %d bytes", maxClaimBytes)}
		}
	case AuthOAuth2:
		if a.ClientID == "" {
			return &FieldError{Field: "auth.clientId", Message: "required field is missing"}
		}
		if err := validateURL(ctx, a.TokenURL, p); err != nil {
			return &FieldError{Field: "auth.tokenUrl", Message: err.Error()}
		}
	default:
		return &FieldError{Field: "auth.type", Message: "must be none, jwt or oauth2"}
	}
	return nil
}

// validate checks the credentials a request brought for auth. Missing
// ones may be generated (JWT keys) or kept from the stored config.
func (cr Credentials) validate(a Auth) error {
	if cr.PrivateKey != "" {
		if a.Type != AuthJWT || !endpointauth.Asymmetric(a.Algorithm) {
			return &FieldError{Field: "auth.privateKey", Message: "only for jwt with RS256, ES256 or EdDSA"}
		}
		if _, err := endpointauth.ParseKey(a.Algorithm, cr.PrivateKey); err != nil {
			return &FieldError{Field: "auth.privateKey", Message: err.Error()}
		}
	}
	if cr.Secret != "" {
		if a.Type != AuthJWT || a.Algorithm != endpointauth.HS256 {
			return &FieldError{Field: "auth.secret", Message: "only for jwt with HS256"}
		}
		if _, err := endpointauth.ParseKey(a.Algorithm, cr.Secret); err != nil {
			return &FieldError{Field: "auth.secret", Message: err.Error()}
		}
	}
	if cr.ClientSecret != "" && a.Type != AuthOAuth2 {
		return &FieldError{Field: "auth.clientSecret", Message: "only for oauth2"}
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
