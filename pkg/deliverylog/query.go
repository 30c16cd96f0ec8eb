package deliverylog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// Limits of a query.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	maxIDLen     = 256
)

// FieldError is a query parameter that is wrong; Field names it.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Query selects entries of a config's log. Zero fields do not filter.
type Query struct {
	Type       string // record type, e.g. message.attempt
	Outcome    string // an attempt's label or what a record settled with
	Status     string // feedback status
	HTTPStatus int
	WebhookID  string
	EventID    string
	RequestID  string
	Since      time.Time // inclusive
	Until      time.Time // inclusive
	Limit      int       // 1..MaxLimit; ParseQuery sets DefaultLimit
	// Cursor: only entries older than this one (a Page's NextCursor).
	Cursor string
}

// Vocabularies the filters accept.
var (
	types = []string{outcome.TypeAttempt, outcome.TypeOutcome, outcome.TypeExhausted,
		outcome.TypeEndpointFailing, outcome.TypeEndpointRecovered, outcome.TypeEndpointDisabled}
	outcomes = []string{"success", "retryable", "rejected", "error", // attempts
		"delivered", "duplicate", "skipped", "retried", "deferred", "dead_lettered", "dead_letter_lost"} // outcomes
	statuses = []string{"sent", "delivered", "bounce", "error"}
)

// ParseQuery reads the query parameters of GET .../attempts. An unknown
// parameter, one given twice, a value outside its vocabulary, a malformed
// time or cursor, since after until, or a limit outside 1..500 is a
// *FieldError naming the parameter.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Limit: DefaultLimit}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad parameter, always the same one
	for _, k := range keys {
		vals := v[k]
		if len(vals) != 1 {
			return Query{}, &FieldError{k, "give it once"}
		}
		s := vals[0]
		bad := func(format string, a ...any) error { return &FieldError{k, fmt.Sprintf(format, a...)} }
		switch k {
		case "type":
			if !slices.Contains(types, s) {
				return Query{}, bad("%q is not one of %s", s, strings.Join(types, ", "))
			}
			q.Type = s
		case "outcome":
			if !slices.Contains(outcomes, s) {
				return Query{}, bad("%q is not one of %s", s, strings.Join(outcomes, ", "))
			}
			q.Outcome = s
		case "status":
			if !slices.Contains(statuses, s) {
				return Query{}, bad("%q is not one of %s", s, strings.Join(statuses, ", "))
			}
			q.Status = s
		case "httpStatus":
			n, err := strconv.Atoi(s)
			if err != nil || n < 100 || n > 599 {
				return Query{}, bad("must be an HTTP status from 100 to 599")
			}
			q.HTTPStatus = n
		case "webhookId", "eventId", "requestId":
			if s == "" || len(s) > maxIDLen {
				return Query{}, bad("must be 1 to %d characters", maxIDLen)
			}
			switch k {
			case "webhookId":
				q.WebhookID = s
			case "eventId":
				q.EventID = s
			default:
				q.RequestID = s
			}
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return Query{}, bad("must be an RFC 3339 time, e.g. 2026-12-01T10:00:00Z")
			}
			if k == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxLimit {
				return Query{}, bad("must be a whole number from 1 to %d", MaxLimit)
			}
			q.Limit = n
		case "cursor":
			if _, err := parseCursor(s); err != nil {
				return Query{}, bad("is not a cursor this API returned")
			}
			q.Cursor = s
		default:
			return Query{}, bad("unknown parameter; filters are type, outcome, status, httpStatus, webhookId, eventId, requestId, since, until, limit, cursor")
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until) {
		return Query{}, &FieldError{"since", "is after until"}
	}
	return q, nil
}

// streamID is a Redis stream entry id.
type streamID struct{ ms, seq uint64 }

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

var errCursor = errors.New("malformed cursor")

// parseCursor reads a cursor: the base64url (unpadded) of a stream id
// above 0-0. Redis gives no entry the id 0-0 and refuses "(0-0" as the end
// of an XREVRANGE, so that cursor is refused here, not answered with a
// Redis error.
func parseCursor(s string) (streamID, error) {
	if s == "" || len(s) > 64 {
		return streamID{}, errCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return streamID{}, errCursor
	}
	ms, seq, ok := strings.Cut(string(b), "-")
	if !ok {
		return streamID{}, errCursor
	}
	var id streamID
	if id.ms, err = strconv.ParseUint(ms, 10, 64); err != nil || ms != strconv.FormatUint(id.ms, 10) {
		return streamID{}, errCursor
	}
	if id.seq, err = strconv.ParseUint(seq, 10, 64); err != nil || seq != strconv.FormatUint(id.seq, 10) {
		return streamID{}, errCursor
	}
	if cursorOf(id.String()) != s { // the decoder skips line breaks: one id, one cursor
		return streamID{}, errCursor
	}
	if id == (streamID{}) {
		return streamID{}, errCursor
	}
	return id, nil
}

func cursorOf(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// match says whether r passes q's filters.
func (q *Query) match(r *outcome.Record) bool {
	return (q.Type == "" || r.Type == q.Type) &&
		(q.Outcome == "" || r.Outcome == q.Outcome) &&
		(q.Status == "" || r.Status == q.Status) &&
		(q.HTTPStatus == 0 || r.HTTPCode == q.HTTPStatus) &&
		(q.WebhookID == "" || r.WebhookID == q.WebhookID) &&
		(q.EventID == "" || r.EventID == q.EventID) &&
		(q.RequestID == "" || r.RequestID == q.RequestID) &&
		(q.Since.IsZero() || !r.Time.Before(q.Since)) &&
		(q.Until.IsZero() || !r.Time.After(q.Until))
}

// Page is one page of a query, newest first. NextCursor is empty on the
// last page.
type Page struct {
	Records    []*outcome.Record `json:"records"`
	NextCursor string            `json:"nextCursor,omitempty"`
}

// clockSlack: an entry's id is the time Redis wrote it, after the
// record's time by the instance's clock, unless the clocks differ. Reads
// of entries since a time start this much earlier, and filter on the
// record's own time.
const clockSlack = time.Minute

const chunk = 500

// Attempts answers q over the log of org/sandbox, newest first.
func (l *Log) Attempts(ctx context.Context, org, sandbox string, q Query) (Page, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		q.Limit = DefaultLimit
	}
	key := l.streamKey(configKey(org, sandbox))
	end, start := "+", ""
	if q.Cursor != "" {
		id, err := parseCursor(q.Cursor)
		if err != nil {
			return Page{}, &FieldError{"cursor", "is not a cursor this API returned"}
		}
		end = "(" + id.String()
	}
	start = strconv.FormatInt(l.horizon(q.Since).Add(-clockSlack).UnixMilli(), 10)
	page := Page{Records: []*outcome.Record{}}
	var lastID string
	for {
		msgs, err := l.rdb.XRevRangeN(ctx, key, end, start, chunk).Result()
		if err != nil {
			return Page{}, fmt.Errorf("delivery log of %s: %w", configKey(org, sandbox), err)
		}
		for _, m := range msgs {
			r, ok := decode(m)
			if !ok || !q.match(r) {
				continue
			}
			if len(page.Records) == q.Limit { // one more exists
				page.NextCursor = cursorOf(lastID)
				return page, nil
			}
			page.Records, lastID = append(page.Records, r), m.ID
		}
		if len(msgs) < chunk {
			return page, nil
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
}

// horizon is the oldest time a read looks at: since, but not before
// MaxAge ago (trimming is approximate: older entries may linger).
func (l *Log) horizon(since time.Time) time.Time {
	return maxTime(since, time.Now().Add(-l.opts.MaxAge))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func decode(m redis.XMessage) (*outcome.Record, bool) {
	s, _ := m.Values["r"].(string)
	var r outcome.Record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, false
	}
	return &r, true
}

// Message is every record the log holds of one webhook-id, oldest first,
// and the last outcome it settled with.
type Message struct {
	WebhookID string            `json:"webhookId"`
	Records   []*outcome.Record `json:"records"`
	// Final is the last message.outcome record that ended the event's
	// delivery (not retried or deferred); nil while it is still retrying.
	Final *outcome.Record `json:"final"`
}

// ErrNotFound: the log holds no record of the webhook-id.
var ErrNotFound = errors.New("no record of this webhook-id in the delivery log")

// Message reads every record of webhookID in the log of org/sandbox.
func (l *Log) Message(ctx context.Context, org, sandbox, webhookID string) (Message, error) {
	key := l.streamKey(configKey(org, sandbox))
	m := Message{WebhookID: webhookID, Records: []*outcome.Record{}}
	start := strconv.FormatInt(l.horizon(time.Time{}).UnixMilli(), 10)
	for {
		msgs, err := l.rdb.XRangeN(ctx, key, start, "+", chunk).Result()
		if err != nil {
			return Message{}, fmt.Errorf("delivery log of %s: %w", configKey(org, sandbox), err)
		}
		for _, x := range msgs {
			r, ok := decode(x)
			if !ok || r.WebhookID != webhookID {
				continue
			}
			m.Records = append(m.Records, r)
			if r.Type == outcome.TypeOutcome && r.Outcome != "retried" && r.Outcome != "deferred" {
				m.Final = r
			}
		}
		if len(msgs) < chunk {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	if len(m.Records) == 0 {
		return Message{}, ErrNotFound
	}
	return m, nil
}
