// Package dlq defines dead-letter records: what finally failed, kept in
// feedback.dlq for inspection and replay. A dead-letter record's key and
// value are the original record's, byte for byte; its headers are the
// original's plus the dlq-* headers below and webhook-id.
package dlq

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/retry"
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

// Header names.
const (
	HeaderReason         = "dlq-reason"
	HeaderWebhookID      = "webhook-id"
	HeaderAttempts       = "dlq-attempts"
	HeaderLastStatus     = "dlq-last-status"
	HeaderLastError      = "dlq-last-error"
	HeaderFirstAttemptAt = "dlq-first-attempt-at"
	HeaderFailedAt       = "dlq-failed-at"
	HeaderSource         = "dlq-source"
	// HeaderValueOmitted holds the original value's size when the value
	// had to be left out (the record would exceed the broker's limit); the
	// original is still at dlq-source until the topic's retention ends.
	HeaderValueOmitted = "dlq-value-omitted"
)

// Headers a replay adds to the records it re-injects into the input
// topics. They travel with the event through retries and, if it fails
// again, into its next dead letter, so its history is never lost.
const (
	HeaderReplayJob            = "replay-job"              // id of the replay job that re-injected it
	HeaderReplayOf             = "replay-of"               // topic/partition/offset of the dead letter it came from
	HeaderReplayCount          = "replay-count"            // times it has been replayed
	HeaderReplayPriorAttempts  = "replay-prior-attempts"   // attempts made before this replay
	HeaderReplayFirstAttemptAt = "replay-first-attempt-at" // first attempt ever (RFC 3339)
)

// IsReplayHeader reports whether a header is one of the replay headers.
func IsReplayHeader(k string) bool {
	switch k {
	case HeaderReplayJob, HeaderReplayOf, HeaderReplayCount, HeaderReplayPriorAttempts, HeaderReplayFirstAttemptAt:
		return true
	}
	return false
}

// Entry is the dead-letter information of one event.
type Entry struct {
	Reason         string
	WebhookID      string
	Attempts       int
	LastStatus     int    // 0: no HTTP status
	LastError      string // classified, never a secret or a URL
	FirstAttemptAt time.Time
	FailedAt       time.Time
	Source         string // "topic/partition/offset" of the input record
	ValueOmitted   int    // size of a value left out, 0 if the value is there
}

func isOwnHeader(k string) bool {
	switch k {
	case HeaderReason, HeaderWebhookID, HeaderAttempts, HeaderLastStatus, HeaderLastError,
		HeaderFirstAttemptAt, HeaderFailedAt, HeaderSource, HeaderValueOmitted:
		return true
	}
	return retry.IsOwnHeader(k)
}

// Record builds the dead-letter record for orig, which may be an input
// record or a retry record.
func (e Entry) Record(topic string, orig *kgo.Record) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(orig.Headers)+8)
	for _, oh := range orig.Headers {
		if !isOwnHeader(oh.Key) {
			h = append(h, oh)
		}
	}
	status, first := "", ""
	if e.LastStatus != 0 {
		status = strconv.Itoa(e.LastStatus)
	}
	if !e.FirstAttemptAt.IsZero() {
		first = e.FirstAttemptAt.UTC().Format(time.RFC3339)
	}
	h = append(h,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(e.Reason)},
		kgo.RecordHeader{Key: HeaderWebhookID, Value: []byte(e.WebhookID)},
		kgo.RecordHeader{Key: HeaderAttempts, Value: []byte(strconv.Itoa(e.Attempts))},
		kgo.RecordHeader{Key: HeaderLastStatus, Value: []byte(status)},
		kgo.RecordHeader{Key: HeaderLastError, Value: []byte(e.LastError)},
		kgo.RecordHeader{Key: HeaderFirstAttemptAt, Value: []byte(first)},
		kgo.RecordHeader{Key: HeaderFailedAt, Value: []byte(e.FailedAt.UTC().Format(time.RFC3339))},
		kgo.RecordHeader{Key: HeaderSource, Value: []byte(e.Source)},
	)
	value := orig.Value
	if e.ValueOmitted > 0 {
		value = nil
		h = append(h, kgo.RecordHeader{Key: HeaderValueOmitted, Value: []byte(strconv.Itoa(e.ValueOmitted))})
	}
	return &kgo.Record{Topic: topic, Key: orig.Key, Value: value, Headers: h}
}

// ParseEntry reads the dead-letter headers of a record from feedback.dlq.
func ParseEntry(headers []kgo.RecordHeader) (Entry, error) {
	var e Entry
	var err error
	for _, h := range headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReason:
			e.Reason = v
		case HeaderWebhookID:
			e.WebhookID = v
		case HeaderAttempts:
			e.Attempts, err = strconv.Atoi(v)
		case HeaderLastStatus:
			if v != "" {
				e.LastStatus, err = strconv.Atoi(v)
			}
		case HeaderLastError:
			e.LastError = v
		case HeaderFirstAttemptAt:
			if v != "" {
				e.FirstAttemptAt, err = time.Parse(time.RFC3339, v)
			}
		case HeaderFailedAt:
			e.FailedAt, err = time.Parse(time.RFC3339, v)
		case HeaderSource:
			e.Source = v
		case HeaderValueOmitted:
			e.ValueOmitted, err = strconv.Atoi(v)
		}
		if err != nil {
			return Entry{}, fmt.Errorf("header %s: %w", h.Key, err)
		}
	}
	if e.Reason == "" {
		return Entry{}, fmt.Errorf("not a dead-letter record: no %s header", HeaderReason)
	}
	return e, nil
}

// Source formats a record's coordinates.
func Source(topic string, partition int32, offset int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)
}

// OriginalHeaders returns the headers of a dead letter (or a record on its
// way through feedbackd) that its sender set: without feedbackd's dlq-*,
// retry-*, replay-* and webhook-id headers.
func OriginalHeaders(headers []kgo.RecordHeader) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(headers))
	for _, h := range headers {
		if !isOwnHeader(h.Key) && !IsReplayHeader(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// Header returns the value of a header, "" if absent.
func Header(headers []kgo.RecordHeader, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
