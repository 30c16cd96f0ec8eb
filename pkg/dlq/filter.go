package dlq

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Tenant and event fields of a dead letter, read from its value; for a
// value that is not a valid event, org and sandbox come from the
// "<imsOrg>/<sandboxId>" key when it has that form.
type eventFields struct {
	Org     string
	Sandbox string
	Channel string
	Status  string
}

func readEventFields(key, value []byte) eventFields {
	var ev struct {
		Org     string `json:"imsOrg"`
		Sandbox struct {
			ID string `json:"id"`
		} `json:"sandbox"`
		Channel  string `json:"channel"`
		Feedback struct {
			Status struct {
				Value string `json:"value"`
			} `json:"feedbackStatus"`
		} `json:"messageDeliveryFeedback"`
	}
	_ = json.Unmarshal(value, &ev) // best effort: invalid events are dead letters too
	f := eventFields{Org: ev.Org, Sandbox: ev.Sandbox.ID, Channel: ev.Channel, Status: ev.Feedback.Status.Value}
	if f.Org == "" {
		if org, sb, ok := strings.Cut(string(key), "/"); ok {
			f.Org, f.Sandbox = org, sb
		}
	}
	return f
}

// Filter selects dead letters. Empty fields match anything; Since and Until
// bound dlq-failed-at (Since inclusive, Until exclusive).
type Filter struct {
	Org     string    `json:"org,omitempty"`
	Sandbox string    `json:"sandbox,omitempty"`
	Channel string    `json:"channel,omitempty"`
	Status  string    `json:"status,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
}

// Validate reports a filter that can match nothing by mistake; the error
// starts with the field at fault ("reason: ...").
func (f Filter) Validate() error {
	if f.Reason != "" && !slices.Contains(Reasons, f.Reason) {
		return fmt.Errorf("reason: %q is not one of %s", f.Reason, strings.Join(Reasons, ", "))
	}
	if f.Channel != "" && f.Channel != "email" && f.Channel != "sms" {
		return fmt.Errorf("channel: %q is not email or sms", f.Channel)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("since: %s is not before until (%s)", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	return nil
}

// Match reports whether the dead letter passes the filter.
func (f Filter) Match(r Record) bool {
	switch {
	case f.Org != "" && r.Org != f.Org,
		f.Sandbox != "" && r.Sandbox != f.Sandbox,
		f.Channel != "" && r.Channel != f.Channel,
		f.Status != "" && r.Status != f.Status,
		f.Reason != "" && r.Reason != f.Reason,
		!f.Since.IsZero() && r.FailedAt.Before(f.Since),
		!f.Until.IsZero() && !r.FailedAt.Before(f.Until):
		return false
	}
	return true
}

// Stats summarise dead letters.
type Stats struct {
	Total     int            `json:"total"`
	ByReason  map[string]int `json:"byReason"`
	ByChannel map[string]int `json:"byChannel"`
	ByOrg     map[string]int `json:"byOrg"`
	ByAge     map[string]int `json:"byAge"` // AgeBuckets
	Oldest    time.Time      `json:"oldest,omitzero"`
	Newest    time.Time      `json:"newest,omitzero"`
}

// AgeBuckets are the keys of Stats.ByAge, youngest first.
var AgeBuckets = []string{"<1h", "1h-24h", "1d-7d", ">7d"}

// Add counts one dead letter; now is when the statistics are taken.
func (s *Stats) Add(r Record, now time.Time) {
	if s.ByReason == nil {
		s.ByReason, s.ByChannel, s.ByOrg, s.ByAge = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	}
	s.Total++
	s.ByReason[r.Reason]++
	s.ByChannel[orUnknown(r.Channel)]++
	s.ByOrg[orUnknown(r.Org)]++
	switch age := now.Sub(r.FailedAt); {
	case age < time.Hour:
		s.ByAge[AgeBuckets[0]]++
	case age < 24*time.Hour:
		s.ByAge[AgeBuckets[1]]++
	case age < 7*24*time.Hour:
		s.ByAge[AgeBuckets[2]]++
	default:
		s.ByAge[AgeBuckets[3]]++
	}
	if s.Oldest.IsZero() || r.FailedAt.Before(s.Oldest) {
		s.Oldest = r.FailedAt
	}
	if r.FailedAt.After(s.Newest) {
		s.Newest = r.FailedAt
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
