// Package dlq builds, reads back and filters dead-letter records: what
// finally failed, kept in feedback.dlq for inspection and replay. A
// dead-letter record's key and value are the original record's, byte for
// byte; its headers are the original's plus the dlq-* headers and
// webhook-id, whose codec is package header (header.DeadLetter).
package dlq

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
)

// Reasons, the values of the dlq-reason header and of the reason label.
const (
	ReasonInvalidEvent     = "invalid_event"
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonRejected         = "rejected"
	ReasonEndpointInvalid  = "endpoint_invalid"
	ReasonEndpointDisabled = "endpoint_disabled"
)

// Reasons lists every reason, for metrics and docs.
var Reasons = []string{ReasonInvalidEvent, ReasonRetriesExhausted, ReasonRejected, ReasonEndpointInvalid, ReasonEndpointDisabled}

// ToKafka builds the dead-letter record of e for orig, which may be an
// input record or a retry record: orig's key and value (none if
// e.ValueOmitted is set), the headers of orig that are not retry or
// dead-letter headers (the sender's and a replay's travel on), then e's.
func ToKafka(topic string, e header.DeadLetter, orig *kgo.Record) *kgo.Record {
	h := header.Without(orig.Headers, isReplaced, 9)
	value := orig.Value
	if e.ValueOmitted > 0 {
		value = nil
	}
	return &kgo.Record{Topic: topic, Key: orig.Key, Value: value, Headers: e.Append(h)}
}

// isReplaced reports whether a dead letter drops the header of its
// original: its retry state and any earlier dead-letter headers.
func isReplaced(key string) bool { return header.IsRetry(key) || header.IsDeadLetter(key) }
