package header

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzParseHeaders feeds one header value, under each name feedbackd
// owns, to the parsers: they never panic, and what they accept writes
// back to headers that parse to the same value (times at millisecond
// precision, the precision written).
func FuzzParseHeaders(f *testing.F) {
	for _, v := range []string{"", "0", "-1", "3", "1800000000123", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000006789Z",
		"2026-12-02T07:25:01.123+01:00", "0001-01-01T00:00:00Z", "msg_1", "a b", "feedback.sent/2/99", "99999999999999999999", "0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"} {
		f.Add(v)
	}
	keys := []string{WebhookID, RetryAttempts, RetryDueAt, RetryFirstAttemptAt, RetrySource, RetryOriginTime, RetryLastStatus,
		RetryLastError, RetryDeferrals, RetryDeferredSince, DLQReason, DLQAttempts, DLQLastStatus, DLQLastError,
		DLQFirstAttemptAt, DLQFailedAt, DLQSource, DLQValueOmitted, ReplayJob, ReplayOf, ReplayCount, ReplayPriorAttempts, ReplayFirstAttemptAt}
	f.Fuzz(func(t *testing.T, v string) {
		if at, err := ParseTime(v); err == nil {
			again, err := ParseTime(FormatTime(at))
			if err != nil || !again.Equal(truncate(at)) {
				t.Fatalf("ParseTime(%q) = %v; written %q reads %v, %v", v, at, FormatTime(at), again, err)
			}
		}
		base := Retry{WebhookID: "w", DueAt: time.UnixMilli(1)}.Append(DeadLetter{Reason: "rejected"}.Append(nil))
		for _, k := range keys {
			h := append(base[:len(base):len(base)], kgo.RecordHeader{Key: k, Value: []byte(v)})
			if s, err := ParseRetry(h); err == nil {
				if again, err := ParseRetry(s.Append(nil)); err != nil || !sameRetry(again, s) {
					t.Fatalf("%s=%q: retry %+v reads back as %+v, %v", k, v, s, again, err)
				}
			}
			if e, err := ParseDeadLetter(h); err == nil {
				if again, err := ParseDeadLetter(e.Append(nil)); err != nil || !sameDeadLetter(again, e) {
					t.Fatalf("%s=%q: dead letter %+v reads back as %+v, %v", k, v, e, again, err)
				}
			}
			if r, err := ParseReplay(h); err == nil {
				if again, err := ParseReplay(r.Append(nil)); err != nil || again.Job != r.Job || again.Of != r.Of || again.Count != r.Count ||
					again.PriorAttempts != r.PriorAttempts || !again.FirstAttemptAt.Equal(truncate(r.FirstAttemptAt)) {
					t.Fatalf("%s=%q: replay %+v reads back as %+v, %v", k, v, r, again, err)
				}
			}
		}
	})
}

// truncate is t as FormatTime keeps it: milliseconds, truncated.
func truncate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	s, _ := ParseTime(FormatTime(t))
	return s
}

func sameRetry(a, b Retry) bool {
	for _, p := range [][2]time.Time{{a.DueAt, b.DueAt}, {a.FirstAttemptAt, b.FirstAttemptAt}, {a.OriginTime, b.OriginTime}} {
		if !p[0].Equal(truncate(p[1])) {
			return false
		}
	}
	if b.Deferrals > 0 && !a.DeferredSince.Equal(truncate(b.DeferredSince)) {
		return false
	}
	a.DueAt, a.FirstAttemptAt, a.OriginTime, a.DeferredSince = b.DueAt, b.FirstAttemptAt, b.OriginTime, b.DeferredSince
	return a == b
}

func sameDeadLetter(a, b DeadLetter) bool {
	if !a.FirstAttemptAt.Equal(truncate(b.FirstAttemptAt)) || !a.FailedAt.Equal(truncate(b.FailedAt)) {
		return false
	}
	a.FirstAttemptAt, a.FailedAt = b.FirstAttemptAt, b.FailedAt
	b.ValueOmitted = max(b.ValueOmitted, 0) // a negative size is no omission, and not written
	return a == b
}
