package endpointauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// OAuth2 is a config's client-credentials grant. Its String method never
// shows the client secret.
type OAuth2 struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scope        string
	Audience     string
	key          string // cache key: the config and every parameter above
}

func (o *OAuth2) String() string {
	return "endpointauth.OAuth2{" + o.TokenURL + ", client " + o.ClientID + "}"
}

// NewOAuth2 describes the grant of config configKey.
func NewOAuth2(configKey, tokenURL, clientID, clientSecret, scope, audience string) *OAuth2 {
	h := sha256.Sum256([]byte(strings.Join([]string{tokenURL, clientID, clientSecret, scope, audience}, "\x00")))
	return &OAuth2{TokenURL: tokenURL, ClientID: clientID, ClientSecret: clientSecret, Scope: scope, Audience: audience,
		key: configKey + "#" + hex.EncodeToString(h[:8])}
}

// ErrToken wraps failures to get an access token.
var ErrToken = errors.New("oauth2 token request failed")

// TokenCache fetches access tokens and shares each one among all
// deliveries of its config until shortly before it expires. It is safe for
// concurrent use: concurrent requests for one config wait for one fetch.
type TokenCache struct {
	client  *http.Client // the guarded client: token URLs are tenants' too
	fetches *prometheus.CounterVec
	mu      sync.Mutex
	entries map[string]*tokenEntry
}

type tokenEntry struct {
	mu        sync.Mutex // held while fetching
	token     string
	refreshAt time.Time
}

// NewTokenCache uses client for token requests and counts them in fetches
// (label result: ok, error), which may be nil.
func NewTokenCache(client *http.Client, fetches *prometheus.CounterVec) *TokenCache {
	return &TokenCache{client: client, fetches: fetches, entries: map[string]*tokenEntry{}}
}

func (c *TokenCache) entry(key string) *tokenEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &tokenEntry{}
		c.entries[key] = e
	}
	return e
}

// Token returns a valid access token for o, fetching one if the cached one
// is missing or about to expire. Failures wrap ErrToken.
func (c *TokenCache) Token(ctx context.Context, o *OAuth2) (string, error) {
	e := c.entry(o.key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token != "" && time.Now().Before(e.refreshAt) {
		return e.token, nil
	}
	cc := clientcredentials.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, TokenURL: o.TokenURL, Scopes: strings.Fields(o.Scope)}
	if o.Audience != "" {
		cc.EndpointParams = url.Values{"audience": {o.Audience}}
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, c.client))
	if err != nil {
		c.count("error")
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return "", fmt.Errorf("%w: token endpoint answered %d", ErrToken, re.Response.StatusCode)
		}
		return "", fmt.Errorf("%w: %v", ErrToken, errors.Unwrap(err))
	}
	c.count("ok")
	now := time.Now()
	expiry := tok.Expiry
	if expiry.IsZero() { // no expires_in: assume a short life
		expiry = now.Add(5 * time.Minute)
	}
	// Refresh a little before expiry: 10% of the lifetime, at least 5 s.
	margin := max(expiry.Sub(now)/10, 5*time.Second)
	e.token, e.refreshAt = tok.AccessToken, expiry.Add(-margin)
	return e.token, nil
}

// Invalidate drops token if it is still the cached one for o: the
// endpoint refused it (401), so the next Token fetches a new one.
func (c *TokenCache) Invalidate(o *OAuth2, token string) {
	e := c.entry(o.key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token == token {
		e.token = ""
	}
}

func (c *TokenCache) count(result string) {
	if c.fetches != nil {
		c.fetches.WithLabelValues(result).Inc()
	}
}
