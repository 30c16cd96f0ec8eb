package header

import (
	"reflect"
	"testing"
	"time"
)

// The headers exactly as the previous release wrote them (retry.State's
// AppendHeaders, dlq.Entry's Record and the replay job, run on these
// values): records it left in the retry and dead-letter topics during an
// upgrade must read back to the same values.
func TestParsesPreviousRelease(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }

	t.Run("retry, attempted and deferred", func(t *testing.T) {
		got, err := ParseRetry(hs(
			"webhook-id", "msg_1",
			"retry-attempts", "3",
			"retry-due-at", "1800000000123",
			"retry-first-attempt-at", "2026-01-02T03:04:05.000006789Z",
			"retry-source", "feedback.sent/2/99",
			"retry-origin-time", "1799000000456",
			"retry-last-status", "503",
			"retry-last-error", "http_503",
			"retry-deferrals", "2",
			"retry-deferred-since", "1799500000789",
		))
		want := Retry{WebhookID: "msg_1", Attempts: 3, DueAt: ms(1_800_000_000_123),
			FirstAttemptAt: utc(2026, 1, 2, 3, 4, 5, 6789), Source: "feedback.sent/2/99",
			OriginTime: ms(1_799_000_000_456), LastStatus: 503, LastError: "http_503",
			Deferrals: 2, DeferredSince: ms(1_799_500_000_789)}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
		}
	})
	t.Run("retry, deferred before its first attempt", func(t *testing.T) {
		got, err := ParseRetry(hs(
			"webhook-id", "msg_2",
			"retry-attempts", "0",
			"retry-due-at", "1800000000000",
			"retry-first-attempt-at", "0001-01-01T00:00:00Z", // the zero time
			"retry-source", "feedback.bounce/0/5",
			"retry-origin-time", "1799999000000",
			"retry-last-status", "",
			"retry-last-error", "",
		))
		want := Retry{WebhookID: "msg_2", DueAt: ms(1_800_000_000_000), Source: "feedback.bounce/0/5", OriginTime: ms(1_799_999_000_000)}
		if err != nil || !reflect.DeepEqual(got, want) || !got.FirstAttemptAt.IsZero() {
			t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
		}
	})
	t.Run("dead letter, value omitted", func(t *testing.T) {
		got, err := ParseDeadLetter(hs(
			"dlq-reason", "retries_exhausted",
			"webhook-id", "msg_1",
			"dlq-attempts", "4",
			"dlq-last-status", "503",
			"dlq-last-error", "http_503",
			"dlq-first-attempt-at", "2026-01-02T03:04:05Z",
			"dlq-failed-at", "2026-01-02T04:00:00Z",
			"dlq-source", "feedback.sent/2/7",
			"dlq-value-omitted", "1234",
		))
		want := DeadLetter{Reason: "retries_exhausted", WebhookID: "msg_1", Attempts: 4, LastStatus: 503, LastError: "http_503",
			FirstAttemptAt: utc(2026, 1, 2, 3, 4, 5, 0), FailedAt: utc(2026, 1, 2, 4, 0, 0, 0),
			Source: "feedback.sent/2/7", ValueOmitted: 1234}
		if err != nil || got != want {
			t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
		}
	})
	t.Run("dead letter, never attempted", func(t *testing.T) {
		got, err := ParseDeadLetter(hs(
			"dlq-reason", "invalid_event",
			"webhook-id", "feedback.sent-0-1",
			"dlq-attempts", "0",
			"dlq-last-status", "",
			"dlq-last-error", "invalid_json",
			"dlq-first-attempt-at", "",
			"dlq-failed-at", "2026-01-02T04:00:00Z",
			"dlq-source", "feedback.sent/0/1",
		))
		want := DeadLetter{Reason: "invalid_event", WebhookID: "feedback.sent-0-1", LastError: "invalid_json",
			FailedAt: utc(2026, 1, 2, 4, 0, 0, 0), Source: "feedback.sent/0/1"}
		if err != nil || got != want {
			t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
		}
	})
	t.Run("replay", func(t *testing.T) {
		got, err := ParseReplay(hs(
			"traceparent", "tp",
			"webhook-id", "w-3",
			"replay-job", "r-1",
			"replay-of", "feedback.dlq/0/3",
			"replay-count", "1",
			"replay-prior-attempts", "10",
			"replay-first-attempt-at", "2026-01-02T03:04:05Z",
		))
		want := Replay{Job: "r-1", Of: "feedback.dlq/0/3", Count: 1, PriorAttempts: 10, FirstAttemptAt: utc(2026, 1, 2, 3, 4, 5, 0)}
		if err != nil || got != want {
			t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
		}
	})
}
