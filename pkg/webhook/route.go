package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/signature"
)

// Skip reasons, used as metric labels.
const (
	SkipNoConfig = "no_config"
	SkipChannel  = "channel_not_selected"
	SkipCampaign = "campaign_not_enabled"
	SkipStatus   = "status_not_delivered"
)

// SkipReason returns why an event on channel for campaignID is not for this
// config, or "" if it should be delivered. A disabled config is not a skip:
// its events are dead-lettered so they can be replayed once it is fixed.
func (c *Config) SkipReason(channel, campaignID string) string {
	if !slices.Contains(c.Channels, channel) {
		return SkipChannel
	}
	if !slices.Contains(c.Campaigns, AllCampaigns) && !slices.Contains(c.Campaigns, campaignID) {
		return SkipCampaign
	}
	return ""
}

// Target is a stored config ready for delivery: its secrets parsed into
// signers, its custom headers canonicalised, its auth prepared. It is
// immutable and safe for concurrent use; a config change produces a new
// Target. Its String method shows no secret.
type Target struct {
	Config Config
	URL    *url.URL    // Config.URL parsed; nil if it does not parse
	Header http.Header // custom headers only
	// Endpoint identifies the URL for per-endpoint limits and circuit
	// breakers: a hash, since a URL may carry credentials.
	Endpoint string
	signers  []timedSigner
	JWT      *endpointauth.JWT    // auth.type jwt
	OAuth2   *endpointauth.OAuth2 // auth.type oauth2
}

type timedSigner struct {
	signer   *signature.Signer
	notAfter time.Time
}

func (t *Target) String() string { return "webhook.Target{" + t.Config.Key() + "}" }

// NewTarget prepares a stored config for delivery.
func NewTarget(s *Stored) (*Target, error) {
	sum := sha256.Sum256([]byte(s.URL))
	t := &Target{Config: s.Config, Header: make(http.Header, len(s.Headers)), Endpoint: hex.EncodeToString(sum[:12])}
	t.URL, _ = url.Parse(s.URL) // a URL that does not parse is dead-lettered at delivery
	for k, v := range s.Headers {
		t.Header.Set(k, v)
	}
	for _, sec := range s.Secrets {
		signer, err := signature.NewSigner(sec.Value)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", s.Key(), err)
		}
		t.signers = append(t.signers, timedSigner{signer, sec.NotAfter})
	}
	if len(t.signers) == 0 {
		return nil, fmt.Errorf("config %s has no signing secret", s.Key())
	}
	switch s.Auth.Type {
	case AuthJWT:
		if len(s.JWTKeys) == 0 {
			return nil, fmt.Errorf("config %s has no JWT key", s.Key())
		}
		k := s.JWTKeys[0]
		jwt, err := endpointauth.NewJWT(k.Algorithm, k.ID, k.Material, s.Auth.Issuer, s.Org, s.Auth.Audience, s.Auth.TTL(), s.Auth.Claims)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", s.Key(), err)
		}
		t.JWT = jwt
	case AuthOAuth2:
		t.OAuth2 = endpointauth.NewOAuth2(s.Key(), s.Auth.TokenURL, s.Auth.ClientID, s.ClientSecret, s.Auth.Scope, s.Auth.Audience)
	}
	return t, nil
}

// AppendSignatures appends the webhook-signature header value: one
// "v1,<sig>" per signing secret valid at now, newest first, space-separated.
func (t *Target) AppendSignatures(dst []byte, id string, ts int64, body []byte, now time.Time) []byte {
	n := 0
	for _, s := range t.signers {
		if !s.notAfter.IsZero() && now.After(s.notAfter) {
			continue
		}
		if n > 0 {
			dst = append(dst, ' ')
		}
		dst = s.signer.AppendSignature(dst, id, ts, body)
		n++
	}
	if n == 0 { // every secret expired: cannot happen after a rotation, but sign anyway
		dst = t.signers[0].signer.AppendSignature(dst, id, ts, body)
	}
	return dst
}
