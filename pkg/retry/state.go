package retry

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// Header names of the delivery state carried on retry records. The value
// and key of a retry record are the original record's, byte for byte, and
// its other headers are the original's too.
const (
	HeaderWebhookID      = "webhook-id"
	HeaderAttempts       = "retry-attempts"
	HeaderDueAt          = "retry-due-at"
	HeaderFirstAttemptAt = "retry-first-attempt-at"
	HeaderSource         = "retry-source"
	HeaderOriginTime     = "retry-origin-time"
	HeaderLastStatus     = "retry-last-status"
	HeaderLastError      = "retry-last-error"
	HeaderDeferrals      = "retry-deferrals"
	HeaderDeferredSince  = "retry-deferred-since"
)

// State is what feedbackd knows about an event between attempts.
type State struct {
	WebhookID      string
	Attempts       int       // attempts made so far
	DueAt          time.Time // when the next attempt is due
	FirstAttemptAt time.Time
	Source         string    // "topic/partition/offset" of the input record
	OriginTime     time.Time // timestamp of the input record, for end-to-end latency
	LastStatus     int       // HTTP status of the last attempt, 0 if none
	LastError      string    // classified error of the last attempt
	// PriorAttempts were made before the event was replayed from the
	// dead-letter topic; they do not count against the schedule, which
	// starts afresh with each replay, but a new dead letter reports them.
	PriorAttempts int
	// Deferrals counts the times the event was put back without an
	// attempt because its endpoint's circuit breaker was open or its
	// in-flight share was taken, since DeferredSince. They do not count
	// against the schedule.
	Deferrals     int
	DeferredSince time.Time
}

// IsOwnHeader reports whether a header belongs to the retry state, so that
// forwarding the original's headers does not duplicate it.
func IsOwnHeader(key string) bool {
	switch key {
	case HeaderWebhookID, HeaderAttempts, HeaderDueAt, HeaderFirstAttemptAt, HeaderSource,
		HeaderOriginTime, HeaderLastStatus, HeaderLastError, HeaderDeferrals, HeaderDeferredSince:
		return true
	}
	return false
}

// AppendHeaders appends the state as headers.
func (s State) AppendHeaders(h []kgo.RecordHeader) []kgo.RecordHeader {
	status := ""
	if s.LastStatus != 0 {
		status = strconv.Itoa(s.LastStatus)
	}
	h = append(h,
		kgo.RecordHeader{Key: HeaderWebhookID, Value: []byte(s.WebhookID)},
		kgo.RecordHeader{Key: HeaderAttempts, Value: []byte(strconv.Itoa(s.Attempts))},
		kgo.RecordHeader{Key: HeaderDueAt, Value: []byte(strconv.FormatInt(s.DueAt.UnixMilli(), 10))},
		kgo.RecordHeader{Key: HeaderFirstAttemptAt, Value: []byte(s.FirstAttemptAt.UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderSource, Value: []byte(s.Source)},
		kgo.RecordHeader{Key: HeaderOriginTime, Value: []byte(strconv.FormatInt(s.OriginTime.UnixMilli(), 10))},
		kgo.RecordHeader{Key: HeaderLastStatus, Value: []byte(status)},
		kgo.RecordHeader{Key: HeaderLastError, Value: []byte(s.LastError)},
	)
	if s.Deferrals > 0 {
		h = append(h,
			kgo.RecordHeader{Key: HeaderDeferrals, Value: []byte(strconv.Itoa(s.Deferrals))},
			kgo.RecordHeader{Key: HeaderDeferredSince, Value: []byte(strconv.FormatInt(s.DeferredSince.UnixMilli(), 10))},
		)
	}
	return h
}

// ParseState reads the state from a retry record's headers.
func ParseState(headers []kgo.RecordHeader) (State, error) {
	var (
		s   State
		err error
	)
	for _, h := range headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderWebhookID:
			if s.WebhookID = v; !event.IsEventID(v) {
				err = errors.New("not a valid eventId")
			}
		case HeaderAttempts:
			s.Attempts, err = strconv.Atoi(v)
		case HeaderDueAt:
			s.DueAt, err = parseMilli(v)
		case HeaderFirstAttemptAt:
			s.FirstAttemptAt, err = time.Parse(time.RFC3339Nano, v)
		case HeaderSource:
			s.Source = v
		case HeaderOriginTime:
			s.OriginTime, err = parseMilli(v)
		case HeaderLastStatus:
			if v != "" {
				s.LastStatus, err = strconv.Atoi(v)
			}
		case HeaderLastError:
			s.LastError = v
		case HeaderDeferrals:
			s.Deferrals, err = strconv.Atoi(v)
		case HeaderDeferredSince:
			s.DeferredSince, err = parseMilli(v)
		default:
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("retry header %s: %w", h.Key, err)
		}
	}
	// Attempts is 0 for an event deferred before its first attempt.
	if s.WebhookID == "" || s.Attempts < 0 || s.Deferrals < 0 || s.DueAt.IsZero() {
		return State{}, fmt.Errorf("retry record lacks %s, %s or %s", HeaderWebhookID, HeaderAttempts, HeaderDueAt)
	}
	return s, nil
}

func parseMilli(v string) (time.Time, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}
