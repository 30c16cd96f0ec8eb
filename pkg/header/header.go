// Package header is the codec of every header feedbackd owns on Kafka
// records: the delivery state of retry records, the story of dead letters,
// the history a replay adds, the recovery job that re-sent an event, and
// the webhook-id they all carry. Nothing
// else reads or writes these names; the rest of a record's headers are its
// sender's (Foreign) and travel with it unchanged, but for traceparent and
// tracestate, which the pipeline replaces with its own trace context when
// tracing is on (package tracing).
//
//	| header | written by | on | value |
//	|---|---|---|---|
//	| webhook-id | Retry, DeadLetter, replays, recoveries | retry records, dead letters, replayed and recovered input records | the event's webhook-id |
//	| retry-attempts | Retry | retry records | attempts made so far (integer) |
//	| retry-due-at | Retry | retry records | when the next attempt is due (time) |
//	| retry-first-attempt-at | Retry | retry records | first attempt (time; empty if none yet) |
//	| retry-source | Retry | retry records | topic/partition/offset of the input record |
//	| retry-origin-time | Retry | retry records | timestamp of the input record (time) |
//	| retry-last-status | Retry | retry records | HTTP status of the last attempt, empty if none |
//	| retry-last-error | Retry | retry records | classified error of the last attempt |
//	| retry-deferrals, retry-deferred-since | Retry | retry records of deferred events | times put back without an attempt (integer), since when (time) |
//	| dlq-reason | DeadLetter | dead letters | why it failed (dlq.Reasons) |
//	| dlq-attempts | DeadLetter | dead letters | attempts made, across replays (integer) |
//	| dlq-last-status, dlq-last-error | DeadLetter | dead letters | as retry-last-* |
//	| dlq-first-attempt-at, dlq-failed-at | DeadLetter | dead letters | first attempt (time; empty if none), when it failed (time) |
//	| dlq-source | DeadLetter | dead letters | topic/partition/offset of the input record |
//	| dlq-value-omitted | DeadLetter | dead letters too large for the broker | size of the value left out (integer) |
//	| replay-job, replay-of, replay-count | Replay | replayed input records, and their retry records and dead letters | job id, topic/partition/offset of the dead letter, times replayed |
//	| replay-prior-attempts, replay-first-attempt-at | Replay | same | attempts before this replay (integer), first attempt ever (time; empty if none) |
//	| recover-job | recovery jobs | recovered input records, and their retry records and dead letters | id of the recovery job that re-sent the event |
//
// Times are written in one format: RFC 3339 in UTC with milliseconds,
// "2026-12-02T07:25:01.123Z" (FormatTime); a zero time is written empty.
// Compatibility: the previous release wrote retry-due-at, retry-origin-time
// and retry-deferred-since as Unix milliseconds, retry-first-attempt-at as
// RFC 3339 with nanoseconds and the dlq-* and replay-* times as RFC 3339 in
// seconds. Records it wrote stay in the retry and dead-letter topics across
// an upgrade, so ParseTime, and every parser here, reads RFC 3339 at any
// precision and Unix milliseconds as well, and will keep doing so.
//
// Everything here is a value or a pure function, safe for concurrent use.
package header

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// WebhookID is the event's webhook-id, the same on the input record (when
// a replay set it), its retry records and its dead letters.
const WebhookID = "webhook-id"

// Headers of the retry state (Retry).
const (
	RetryAttempts       = "retry-attempts"
	RetryDueAt          = "retry-due-at"
	RetryFirstAttemptAt = "retry-first-attempt-at"
	RetrySource         = "retry-source"
	RetryOriginTime     = "retry-origin-time"
	RetryLastStatus     = "retry-last-status"
	RetryLastError      = "retry-last-error"
	RetryDeferrals      = "retry-deferrals"
	RetryDeferredSince  = "retry-deferred-since"
)

// Headers of a dead letter (DeadLetter).
const (
	DLQReason         = "dlq-reason"
	DLQAttempts       = "dlq-attempts"
	DLQLastStatus     = "dlq-last-status"
	DLQLastError      = "dlq-last-error"
	DLQFirstAttemptAt = "dlq-first-attempt-at"
	DLQFailedAt       = "dlq-failed-at"
	DLQSource         = "dlq-source"
	// DLQValueOmitted holds the original value's size when the value had
	// to be left out (the record would exceed the broker's limit); the
	// original is still at dlq-source until the topic's retention ends.
	DLQValueOmitted = "dlq-value-omitted"
)

// Headers a replay adds to the records it re-injects (Replay). They travel
// with the event through retries and, if it fails again, into its next
// dead letter, so its history is never lost.
const (
	ReplayJob            = "replay-job"
	ReplayOf             = "replay-of"
	ReplayCount          = "replay-count"
	ReplayPriorAttempts  = "replay-prior-attempts"
	ReplayFirstAttemptAt = "replay-first-attempt-at"
)

// RecoverJob names the recovery job that re-sent an input record from a
// time window of the input topics. Like the replay-* headers it travels
// with the event through its retry records and into its dead letter; the
// pipeline keys duplicate suppression by it, so that an explicit recovery
// is delivered although the event was delivered before, and a recovered
// record read twice is delivered once.
const RecoverJob = "recover-job"

// IsRetry reports whether key is written by Retry.Append (webhook-id and
// the retry-* headers): the headers a retry record replaces.
func IsRetry(key string) bool {
	switch key {
	case WebhookID, RetryAttempts, RetryDueAt, RetryFirstAttemptAt, RetrySource,
		RetryOriginTime, RetryLastStatus, RetryLastError, RetryDeferrals, RetryDeferredSince:
		return true
	}
	return false
}

// IsDeadLetter reports whether key is written by DeadLetter.Append
// (webhook-id and the dlq-* headers).
func IsDeadLetter(key string) bool {
	switch key {
	case WebhookID, DLQReason, DLQAttempts, DLQLastStatus, DLQLastError,
		DLQFirstAttemptAt, DLQFailedAt, DLQSource, DLQValueOmitted:
		return true
	}
	return false
}

// IsReplay reports whether key is one of the replay-* headers.
func IsReplay(key string) bool {
	switch key {
	case ReplayJob, ReplayOf, ReplayCount, ReplayPriorAttempts, ReplayFirstAttemptAt:
		return true
	}
	return false
}

// Owned reports whether key is any header feedbackd writes.
func Owned(key string) bool {
	return IsRetry(key) || IsDeadLetter(key) || IsReplay(key) || key == RecoverJob
}

// Foreign returns a new slice of the headers of hs that feedbackd does not
// own (what the record's sender set), in their order.
func Foreign(hs []kgo.RecordHeader) []kgo.RecordHeader {
	return Without(hs, Owned, 0)
}

// Without returns a new slice of the headers of hs for which drop is false,
// in their order, with room for extra more.
func Without(hs []kgo.RecordHeader, drop func(key string) bool, extra int) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(hs)+extra)
	for _, h := range hs {
		if !drop(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// Get returns the value of the first header named key, "" if there is none.
func Get(hs []kgo.RecordHeader, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Source formats a record's coordinates, "topic/partition/offset", the
// value of retry-source, dlq-source and replay-of.
func Source(topic string, partition int32, offset int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)
}

// timeLayout is RFC 3339 with exactly three fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime writes t in the one time format of feedbackd's headers: RFC
// 3339 in UTC with milliseconds (truncated), "" for the zero time.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// ParseTime reads a time header: RFC 3339 at any precision, or the Unix
// milliseconds of the previous release's retry-* times; "" is the zero
// time. The result is in UTC, in the years 0 to 9999 that RFC 3339 can
// write.
func ParseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if isInteger(v) {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		t = time.UnixMilli(ms).UTC()
	} else {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return time.Time{}, errors.New("not an RFC 3339 time or Unix milliseconds")
		}
		t = t.UTC()
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, errors.New("out of the years RFC 3339 can write")
	}
	return t, nil
}

// isInteger reports whether v is an optional minus sign and digits.
func isInteger(v string) bool {
	digits := strings.TrimPrefix(v, "-")
	if digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// formatStatus writes an HTTP status, "" for none.
func formatStatus(status int) string {
	if status == 0 {
		return ""
	}
	return strconv.Itoa(status)
}

// parseStatus reads an HTTP status, 0 for "".
func parseStatus(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.Atoi(v)
}

func hdr(key, value string) kgo.RecordHeader { return kgo.RecordHeader{Key: key, Value: []byte(value)} }
