package header

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// Retry is what feedbackd knows about an event between attempts, carried
// in the headers of its retry records. A retry record's key and value are
// the original record's, byte for byte, and its other headers are the
// original's too.
type Retry struct {
	WebhookID      string
	Attempts       int       // attempts made so far
	DueAt          time.Time // when the next attempt is due
	FirstAttemptAt time.Time
	Source         string    // "topic/partition/offset" of the input record
	OriginTime     time.Time // timestamp of the input record, for end-to-end latency
	LastStatus     int       // HTTP status of the last attempt, 0 if none
	LastError      string    // classified error of the last attempt
	// PriorAttempts were made before the event was replayed from the
	// dead-letter topic (read from its replay-prior-attempts, never
	// written as a retry header); they do not count against the schedule,
	// which starts afresh with each replay, but a new dead letter reports
	// them.
	PriorAttempts int
	// Deferrals counts the times the event was put back without an
	// attempt because its endpoint's circuit breaker was open or its
	// in-flight share was taken, since DeferredSince. They do not count
	// against the schedule.
	Deferrals     int
	DeferredSince time.Time
	// RecoverJob is the recovery job that re-sent the event (its
	// recover-job header, which its retry records keep as they keep the
	// sender's headers; never written as a retry header).
	RecoverJob string
}

// Append appends the state's headers (webhook-id and retry-*) to h. The
// caller drops the ones h may have already (IsRetry).
func (s Retry) Append(h []kgo.RecordHeader) []kgo.RecordHeader {
	h = append(h,
		hdr(WebhookID, s.WebhookID),
		hdr(RetryAttempts, strconv.Itoa(s.Attempts)),
		hdr(RetryDueAt, FormatTime(s.DueAt)),
		hdr(RetryFirstAttemptAt, FormatTime(s.FirstAttemptAt)),
		hdr(RetrySource, s.Source),
		hdr(RetryOriginTime, FormatTime(s.OriginTime)),
		hdr(RetryLastStatus, formatStatus(s.LastStatus)),
		hdr(RetryLastError, s.LastError),
	)
	if s.Deferrals > 0 {
		h = append(h,
			hdr(RetryDeferrals, strconv.Itoa(s.Deferrals)),
			hdr(RetryDeferredSince, FormatTime(s.DeferredSince)),
		)
	}
	return h
}

// ParseRetry reads the state from a retry record's headers, ignoring the
// others. It fails, naming the header, on a value it cannot read, a
// webhook-id that is not a valid eventId, and a state without webhook-id,
// retry-attempts or retry-due-at.
func ParseRetry(headers []kgo.RecordHeader) (Retry, error) {
	var (
		s   Retry
		err error
	)
	for _, h := range headers {
		v := string(h.Value)
		switch h.Key {
		case WebhookID:
			if s.WebhookID = v; !event.IsEventID(v) {
				err = errors.New("not a valid eventId")
			}
		case RetryAttempts:
			s.Attempts, err = strconv.Atoi(v)
		case RetryDueAt:
			s.DueAt, err = ParseTime(v)
		case RetryFirstAttemptAt:
			s.FirstAttemptAt, err = ParseTime(v)
		case RetrySource:
			s.Source = v
		case RetryOriginTime:
			s.OriginTime, err = ParseTime(v)
		case RetryLastStatus:
			s.LastStatus, err = parseStatus(v)
		case RetryLastError:
			s.LastError = v
		case RetryDeferrals:
			s.Deferrals, err = strconv.Atoi(v)
		case RetryDeferredSince:
			s.DeferredSince, err = ParseTime(v)
		default:
			continue
		}
		if err != nil {
			return Retry{}, fmt.Errorf("retry header %s: %w", h.Key, err)
		}
	}
	// Attempts is 0 for an event deferred before its first attempt.
	if s.WebhookID == "" || s.Attempts < 0 || s.Deferrals < 0 || s.DueAt.IsZero() {
		return Retry{}, fmt.Errorf("retry record lacks %s, %s or %s", WebhookID, RetryAttempts, RetryDueAt)
	}
	return s, nil
}
