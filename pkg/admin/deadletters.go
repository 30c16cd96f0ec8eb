package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

// DeadLetters reads the dead-letter topic from its start to its current
// end, without a consumer group (dlq.Scan).
type DeadLetters interface {
	Scan(ctx context.Context, fn func(dlq.Record) bool) error
}

// maxScans bounds the reads of the dead-letter topic that run at once:
// each reads the whole topic with a Kafka client of its own.
const maxScans = 2

// scanRetryAfter is the Retry-After, in seconds, of a 503 busy.
const scanRetryAfter = "5"

// listDeadLetters answers the statistics of the dead letters that pass the
// filters (as feedbackctl dlq stats) and the oldest limit of them (default
// 50, up to 500; as feedbackctl dlq list), or the one at deadLetter
// (topic/partition/offset). A token scoped to organisations sees only
// theirs. The whole topic is read on each call, except with deadLetter,
// whose read ends at its match. Beyond maxScans reads at once it answers
// 503 busy with Retry-After.
func (a *api) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	if a.opts.DeadLetters == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "reading dead letters is not configured", "")
		return
	}
	q := r.URL.Query()
	req := replay.Request{Org: q.Get("org"), Sandbox: q.Get("sandbox"), Channel: q.Get("channel"), Status: q.Get("status"),
		Reason: q.Get("reason"), Since: q.Get("since"), Until: q.Get("until")}
	p := principal(r)
	if req.Org != "" && !p.Allows(req.Org) {
		writeError(w, http.StatusForbidden, "forbidden", "this token may not read that organisation's dead letters", "org")
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a whole number from 1 to 500", "limit")
			return
		}
		limit = n
	}
	now := time.Now()
	flt, err := req.Filter(now)
	var reqErr *replay.RequestError
	if errors.As(err, &reqErr) {
		writeError(w, http.StatusBadRequest, "invalid_request", reqErr.Message, reqErr.Field)
		return
	}
	if err == nil {
		err = flt.Validate()
	}
	if err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		writeError(w, http.StatusBadRequest, "invalid_request", msg, field)
		return
	}
	select {
	case a.scans <- struct{}{}:
		defer func() { <-a.scans }()
	default:
		w.Header().Set("Retry-After", scanRetryAfter)
		writeError(w, http.StatusServiceUnavailable, "busy",
			"the dead-letter topic is being read by "+strconv.Itoa(maxScans)+" other requests; try again shortly", "")
		return
	}
	at := q.Get("deadLetter")
	stats := dlq.Stats{ByReason: map[string]int{}, ByChannel: map[string]int{}, ByOrg: map[string]int{}, ByAge: map[string]int{}}
	out := []dlq.Entry{}
	err = a.opts.DeadLetters.Scan(r.Context(), func(rec dlq.Record) bool {
		if !flt.Match(rec) || !p.Allows(rec.Org) || (at != "" && rec.Coordinates() != at) {
			return true
		}
		stats.Add(rec, now)
		if len(out) < limit {
			out = append(out, rec.Entry())
		}
		return at == "" // coordinates name one record: the read ends at it
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"stats": stats, "deadLetters": out, "truncated": stats.Total > len(out)})
}
