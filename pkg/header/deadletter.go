package header

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DeadLetter is the story of one event that finally failed, carried in
// the headers of its record in the dead-letter topic.
type DeadLetter struct {
	Reason         string // one of dlq.Reasons
	WebhookID      string
	Attempts       int
	LastStatus     int    // 0: no HTTP status
	LastError      string // classified, never a secret or a URL
	FirstAttemptAt time.Time
	FailedAt       time.Time
	Source         string // "topic/partition/offset" of the input record
	ValueOmitted   int    // size of a value left out, 0 if the value is there
}

// Append appends the dead letter's headers (webhook-id and dlq-*) to h;
// dlq-value-omitted only when ValueOmitted is set. The caller drops the
// ones h may have already (IsDeadLetter).
func (e DeadLetter) Append(h []kgo.RecordHeader) []kgo.RecordHeader {
	h = append(h,
		hdr(DLQReason, e.Reason),
		hdr(WebhookID, e.WebhookID),
		hdr(DLQAttempts, strconv.Itoa(e.Attempts)),
		hdr(DLQLastStatus, formatStatus(e.LastStatus)),
		hdr(DLQLastError, e.LastError),
		hdr(DLQFirstAttemptAt, FormatTime(e.FirstAttemptAt)),
		hdr(DLQFailedAt, FormatTime(e.FailedAt)),
		hdr(DLQSource, e.Source),
	)
	if e.ValueOmitted > 0 {
		h = append(h, hdr(DLQValueOmitted, strconv.Itoa(e.ValueOmitted)))
	}
	return h
}

// ParseDeadLetter reads the dead-letter headers of a record from the
// dead-letter topic, ignoring the others. It fails, naming the header, on
// a value it cannot read and on a record without dlq-reason.
func ParseDeadLetter(headers []kgo.RecordHeader) (DeadLetter, error) {
	var (
		e   DeadLetter
		err error
	)
	for _, h := range headers {
		v := string(h.Value)
		switch h.Key {
		case DLQReason:
			e.Reason = v
		case WebhookID:
			e.WebhookID = v
		case DLQAttempts:
			e.Attempts, err = strconv.Atoi(v)
		case DLQLastStatus:
			e.LastStatus, err = parseStatus(v)
		case DLQLastError:
			e.LastError = v
		case DLQFirstAttemptAt:
			e.FirstAttemptAt, err = ParseTime(v)
		case DLQFailedAt:
			e.FailedAt, err = ParseTime(v)
		case DLQSource:
			e.Source = v
		case DLQValueOmitted:
			e.ValueOmitted, err = strconv.Atoi(v)
		default:
			continue
		}
		if err != nil {
			return DeadLetter{}, fmt.Errorf("dead-letter header %s: %w", h.Key, err)
		}
	}
	if e.Reason == "" {
		return DeadLetter{}, fmt.Errorf("not a dead-letter record: no %s header", DLQReason)
	}
	return e, nil
}
