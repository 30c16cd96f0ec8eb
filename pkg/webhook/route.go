package webhook

import (
	"fmt"
	"net/http"
	"slices"

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

// Target is a stored config ready for delivery: its secret parsed into a
// signer and its custom headers canonicalised. It is immutable and safe for
// concurrent use; a config change produces a new Target.
type Target struct {
	Config Config
	Signer *signature.Signer
	Header http.Header // custom headers only
}

// NewTarget prepares a stored config for delivery.
func NewTarget(s *Stored) (*Target, error) {
	signer, err := signature.NewSigner(s.Secret)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", s.Key(), err)
	}
	h := make(http.Header, len(s.Headers))
	for k, v := range s.Headers {
		h.Set(k, v)
	}
	return &Target{Config: s.Config, Signer: signer, Header: h}, nil
}
