// Package replay re-injects records into the input topics, so that
// feedbackd delivers them again with their webhook-id, exactly once per
// job: dead letters (a replay), or the records of one tenant in a time
// window of the input topics themselves (a recovery, see Request.Source).
//
// A job is identified by its request's filters: an identical request is the
// same job and continues where it stopped. Progress is the committed offset
// of the job's consumer group on the dead-letter topic; re-injected records
// and the offsets that account for them are written in one Kafka
// transaction, so an interrupted job (Ctrl-C, crash) resumes without
// replaying anything twice or skipping anything. A job never replays a dead
// letter that its own earlier replay produced, so a record that keeps
// failing cannot loop; and no job replays a dead letter that was replayed
// and failed again (the newer dead letter stands for the event), so an
// event is never re-injected twice for one outage.
//
// A recovery reads the input topics from the offsets of its window's start
// to those of its end, found by timestamp, and re-injects the tenant's
// events with their webhook-id and a recover-job header; its progress and
// exactly-once re-injection work the same way. Each recovery is a job of
// its own (a new explicit request to send the window again), and what it
// can resend is bounded by the topics' retention, which its progress
// states (Progress.Topics).
package replay

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// Sources a job reads (Request.Source).
const (
	SourceDLQ   = ""      // the dead-letter topic: a replay
	SourceInput = "input" // a time window of the input topics: a recovery
)

// Request is a replay or a recovery as an operator asks for it. Since and
// Until are RFC 3339 times or durations back from now ("90m", "24h", "7d").
type Request struct {
	// Source is what the job reads; a recovery takes Org, Sandbox, Since,
	// Until (both required), Statuses, Rate and DryRun, and its Job.
	Source  string  `json:"source,omitempty"`
	Org     string  `json:"org,omitempty"`
	Sandbox string  `json:"sandbox,omitempty"`
	Channel string  `json:"channel,omitempty"`
	Status  string  `json:"status,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Since   string  `json:"since,omitempty"`
	Until   string  `json:"until,omitempty"`
	Rate    float64 `json:"rate,omitempty"`   // records per second; 0: no limit
	DryRun  bool    `json:"dryRun,omitempty"` // count only; write nothing
	// Again makes a new job of an otherwise identical request, e.g. to
	// replay once more what an earlier job replayed and what failed again.
	Again string `json:"again,omitempty"`
	// Statuses keeps, in a recovery, the events with these feedback
	// statuses; empty: every status feedbackd delivers.
	Statuses []string `json:"statuses,omitempty"`
	// Job is a recovery's id, chosen when it starts (Recovery): each
	// recovery is a job of its own.
	Job string `json:"job,omitempty"`
}

// ID identifies the job. A replay's is derived from the request: requests
// that select the same dead letters (as written, before relative times are
// resolved) share it; Rate and DryRun do not change it. A recovery's is
// its Job.
func (r Request) ID() string {
	if r.Source == SourceInput {
		return r.Job
	}
	h := sha256.Sum256([]byte(strings.Join([]string{r.Org, r.Sandbox, r.Channel, r.Status, r.Reason, r.Since, r.Until, r.Again}, "\x00")))
	return "rp-" + hex.EncodeToString(h[:8])
}

// RequestError is an invalid request; Field names the field at fault.
type RequestError struct {
	Field   string
	Message string
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Message }

// Filter resolves the request into a dead-letter filter at time now. Its
// errors are *RequestError.
func (r Request) Filter(now time.Time) (dlq.Filter, error) {
	f := dlq.Filter{Org: r.Org, Sandbox: r.Sandbox, Channel: r.Channel, Status: r.Status, Reason: r.Reason}
	var err error
	if f.Since, err = when(r.Since, now); err != nil {
		return dlq.Filter{}, &RequestError{"since", err.Error()}
	}
	if f.Until, err = when(r.Until, now); err != nil {
		return dlq.Filter{}, &RequestError{"until", err.Error()}
	}
	if r.Rate < 0 {
		return dlq.Filter{}, &RequestError{"rate", "must not be negative"}
	}
	if err := f.Validate(); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		return dlq.Filter{}, &RequestError{field, msg}
	}
	return f, nil
}

// when reads an RFC 3339 time or a duration back from now; "" is zero.
func when(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 90m, 24h or 7d", s)
	}
	return now.Add(-d), nil
}
