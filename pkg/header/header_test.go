package header

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func hs(kv ...string) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for i := 0; i < len(kv); i += 2 {
		out = append(out, hdr(kv[i], kv[i+1]))
	}
	return out
}

func TestTimeFormat(t *testing.T) {
	at := time.Date(2026, 12, 2, 7, 25, 1, 123_456_789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		in   string
		want time.Time
	}{
		{"written", FormatTime(at), at.Truncate(time.Millisecond).UTC()},
		{"milliseconds", "2026-12-02T06:25:01.123Z", at.Truncate(time.Millisecond).UTC()},
		{"seconds", "2026-12-02T06:25:01Z", at.Truncate(time.Second).UTC()},
		{"nanoseconds", "2026-12-02T06:25:01.123456789Z", at.UTC()},
		{"offset", "2026-12-02T07:25:01.123+01:00", at.Truncate(time.Millisecond).UTC()},
		{"unix milliseconds", "1796192701123", at.Truncate(time.Millisecond).UTC()},
		{"empty", "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTime(tc.in)
			if err != nil || !got.Equal(tc.want) || (!got.IsZero() && got.Location() != time.UTC) {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	if got := FormatTime(at); got != "2026-12-02T06:25:01.123Z" {
		t.Errorf("FormatTime = %q", got)
	}
	if got := FormatTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); got != "2026-01-01T00:00:00.000Z" {
		t.Errorf("FormatTime keeps three digits: %q", got)
	}
	if FormatTime(time.Time{}) != "" {
		t.Error("zero time not written empty")
	}
	for _, bad := range []string{"x", "-", "2026-12-02", "2026-12-02 06:25:01Z", "99999999999999999999", "1.5"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = nil error", bad)
		}
	}
}

func TestRetryRoundTrip(t *testing.T) {
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	for _, tc := range []struct {
		name string
		in   Retry
	}{
		{"attempted and deferred", Retry{
			WebhookID: "msg_1", Attempts: 3, DueAt: ms(1_800_000_000_123),
			FirstAttemptAt: ms(1_799_000_100_000), Source: "feedback.sent/2/99",
			OriginTime: ms(1_799_000_000_000), LastStatus: 503, LastError: "http_503",
			Deferrals: 2, DeferredSince: ms(1_799_500_000_000),
		}},
		{"deferred before its first attempt", Retry{WebhookID: "msg_2", DueAt: ms(1_800_000_000_000), Deferrals: 1, DeferredSince: ms(1_799_999_990_000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRetry(tc.in.Append(hs("traceparent", "tp")))
			if err != nil || !reflect.DeepEqual(got, tc.in) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.in)
			}
		})
	}
}

func TestParseRetryRejects(t *testing.T) {
	ok := Retry{WebhookID: "x", DueAt: time.Now(), Deferrals: 1, DeferredSince: time.Now()}
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
	}{
		{"none", nil},
		{"negative attempts", Retry{WebhookID: "x", Attempts: -1, DueAt: time.Now()}.Append(nil)},
		{"bad deferrals", ok.Append(hs(RetryDeferrals, "many"))},
		{"bad due-at", append(ok.Append(nil), hdr(RetryDueAt, "soon"))},
		{"no due-at", append(ok.Append(nil), hdr(RetryDueAt, ""))},
		{"bad webhook-id", append(ok.Append(nil), hdr(WebhookID, "a b"))},
		{"bad status", append(ok.Append(nil), hdr(RetryLastStatus, "5xx"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRetry(tc.headers); err == nil {
				t.Fatalf("ParseRetry(%v) = nil error", tc.headers)
			}
		})
	}
}

func TestDeadLetterRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 250_000_000, time.UTC)
	for _, tc := range []struct {
		name string
		in   DeadLetter
		n    int // headers written
	}{
		{"exhausted", DeadLetter{Reason: "retries_exhausted", WebhookID: "msg_1", Attempts: 4, LastStatus: 503, LastError: "http_503",
			FirstAttemptAt: at, FailedAt: at.Add(time.Hour), Source: Source("feedback.sent", 2, 7)}, 8},
		{"invalid, no attempt", DeadLetter{Reason: "invalid_event", WebhookID: "feedback.sent-0-1", LastError: "invalid_json",
			FailedAt: at, Source: "feedback.sent/0/1"}, 8},
		{"value omitted", DeadLetter{Reason: "rejected", WebhookID: "w", Attempts: 1, LastStatus: 400, FailedAt: at, ValueOmitted: 2 << 20}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Append(nil)
			got, err := ParseDeadLetter(h)
			if err != nil || got != tc.in || len(h) != tc.n {
				t.Fatalf("got %+v, %v (%d headers)\nwant %+v", got, err, len(h), tc.in)
			}
		})
	}
	if _, err := ParseDeadLetter(hs("x", "y")); err == nil {
		t.Error("a record without dlq-reason parsed")
	}
	if _, err := ParseDeadLetter(hs(DLQReason, "rejected", DLQFailedAt, "yesterday")); err == nil {
		t.Error("a bad dlq-failed-at parsed")
	}
}

func TestReplayRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Replay
	}{
		{"attempted", Replay{Job: "j1", Of: "feedback.dlq/0/3", Count: 2, PriorAttempts: 10, FirstAttemptAt: time.Date(2026, 1, 1, 0, 0, 0, 7_000_000, time.UTC)}},
		{"never attempted", Replay{Job: "j2", Of: "feedback.dlq/1/0", Count: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReplay(tc.in.Append(hs(WebhookID, "w")))
			if err != nil || got != tc.in {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.in)
			}
		})
	}
	if r, err := ParseReplay(hs("traceparent", "tp")); err != nil || r != (Replay{}) {
		t.Errorf("a record never replayed: %+v, %v", r, err)
	}
	if _, err := ParseReplay(hs(ReplayCount, "twice")); err == nil {
		t.Error("a bad replay-count parsed")
	}
}

func TestOwnership(t *testing.T) {
	in := hs("traceparent", "tp", WebhookID, "w", RetryDueAt, "1", DLQReason, "rejected", ReplayJob, "j", RecoverJob, "rc", "x-retry-attempts", "n")
	keys := func(h []kgo.RecordHeader) []string {
		var out []string
		for _, x := range h {
			out = append(out, x.Key)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		drop func(string) bool
		want []string
	}{
		{"foreign", Owned, []string{"traceparent", "x-retry-attempts"}},
		{"without retry", IsRetry, []string{"traceparent", DLQReason, ReplayJob, RecoverJob, "x-retry-attempts"}},
		{"without dead letter", IsDeadLetter, []string{"traceparent", RetryDueAt, ReplayJob, RecoverJob, "x-retry-attempts"}},
		{"without replay", IsReplay, []string{"traceparent", WebhookID, RetryDueAt, DLQReason, RecoverJob, "x-retry-attempts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keys(Without(in, tc.drop, 0)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	if got := keys(Foreign(in)); !reflect.DeepEqual(got, []string{"traceparent", "x-retry-attempts"}) {
		t.Errorf("Foreign = %v", got)
	}
	if Get(in, DLQReason) != "rejected" || Get(in, "absent") != "" {
		t.Error("Get")
	}
	if Source("feedback.sent", 3, 42) != "feedback.sent/3/42" {
		t.Error("Source")
	}
}
