// Package outcome defines the records of the outcomes topic
// (feedback.outcomes): one per delivery attempt, one per outcome a record
// settles with, and operational events about endpoints. They are delivery
// receipts for upstream senders and the history tenants and operators read;
// schemas/outcome.schema.json is their contract.
//
// A record's key is "<imsOrg>/<sandboxId>" (empty for a record that is not
// a valid event), so one tenant's records keep their order in one
// partition. A record never holds a request header, a signing secret, a
// token or a URL: only the event's identifiers, classified errors and the
// first bytes of the endpoint's answer.
package outcome

import "time"

// Types of records.
const (
	// TypeAttempt is one HTTP attempt and its answer.
	TypeAttempt = "message.attempt"
	// TypeOutcome is what a record settled with: Outcome is delivered,
	// retried, deferred, dead_lettered, skipped or duplicate.
	TypeOutcome = "message.outcome"
	// TypeExhausted: an event used up its retries and was dead-lettered.
	TypeExhausted = "message.exhausted"
	// TypeEndpointFailing: an endpoint's circuit breaker opened.
	TypeEndpointFailing = "endpoint.failing"
	// TypeEndpointRecovered: an endpoint's circuit breaker closed again.
	TypeEndpointRecovered = "endpoint.recovered"
	// TypeEndpointDisabled: a config was disabled (DisabledReason says why).
	TypeEndpointDisabled = "endpoint.disabled"
)

// Record is one record of the outcomes topic. Fields that do not apply to a
// type are left out.
type Record struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	Instance   string    `json:"instance"`
	WebhookID  string    `json:"webhookId,omitempty"`
	EventID    string    `json:"eventId,omitempty"`
	RequestID  string    `json:"requestId,omitempty"`
	Org        string    `json:"imsOrg,omitempty"`
	Sandbox    string    `json:"sandbox,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	Status     string    `json:"feedbackStatus,omitempty"`
	CampaignID string    `json:"campaignID,omitempty"`
	// Outcome: for TypeAttempt the attempt's label (success, retryable,
	// rejected, error), for TypeOutcome what the record settled with.
	Outcome string `json:"outcome,omitempty"`
	// Reason of a skip, deferral or dead letter, in a fixed vocabulary.
	Reason   string `json:"reason,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`    // attempts made so far, this one included
	HTTPCode int    `json:"httpStatus,omitempty"` // 0 (left out): no HTTP answer
	// DurationMs of the attempt.
	DurationMs *float64 `json:"durationMs,omitempty"`
	// ErrorClass is the classified error (http_503, timeout, ...).
	ErrorClass string `json:"errorClass,omitempty"`
	// Response holds the first bytes of the answer's body
	// (outcomes.response_bytes), as text; ResponseTruncated says there was
	// more.
	Response          string `json:"response,omitempty"`
	ResponseTruncated bool   `json:"responseTruncated,omitempty"`
	// RetryIn is how long until the next try (retried, deferred), in ms.
	RetryInMs      int64  `json:"retryInMs,omitempty"`
	DisabledReason string `json:"disabledReason,omitempty"`
	// Source is "topic/partition/offset" of the input record (dlq-source).
	Source string `json:"source,omitempty"`

	// Value, if set, is the record as AppendJSON encoded it, kept by its
	// encoder for the record's other readers: the delivery log writes the
	// outcomes topic's bytes rather than encoding them again. It is not
	// itself encoded. Set it before the record is shared; a record is not
	// changed after.
	Value []byte `json:"-"`
}

// Key is the record's Kafka key.
func (r *Record) Key() []byte { return r.AppendKey(nil) }

// AppendKey appends the record's Kafka key to b; b is returned unchanged
// for a record without one (Key is nil).
func (r *Record) AppendKey(b []byte) []byte {
	if r.Org == "" {
		return b
	}
	return append(append(append(b, r.Org...), '/'), r.Sandbox...)
}

// Marshal encodes the record as JSON, as encoding/json would (see
// AppendJSON).
func (r *Record) Marshal() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 384+len(r.Response)+len(r.DisabledReason)))
}

// Millis is d in milliseconds, with microsecond precision.
func Millis(d time.Duration) *float64 {
	ms := float64(d.Microseconds()) / 1000
	return &ms
}
