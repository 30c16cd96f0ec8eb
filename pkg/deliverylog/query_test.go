package deliverylog

import (
	"net/url"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	good := cursorOf("1700000000000-3")
	for _, tc := range []struct {
		name, query string
		field       string // "" : valid
		check       func(Query) bool
	}{
		{"empty", "", "", func(q Query) bool { return q.Limit == DefaultLimit }},
		{"every filter", "type=message.attempt&outcome=retryable&status=bounce&httpStatus=503&webhookId=w&eventId=e&requestId=r" +
			"&since=2026-12-01T10:00:00Z&until=2026-12-01T11:00:00.5Z&limit=500&cursor=" + good, "", func(q Query) bool {
			return q.Type == "message.attempt" && q.Outcome == "retryable" && q.Status == "bounce" && q.HTTPStatus == 503 &&
				q.WebhookID == "w" && q.EventID == "e" && q.RequestID == "r" && q.Limit == 500 && q.Cursor == good &&
				q.Since.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) && q.Until.Equal(time.Date(2026, 12, 1, 11, 0, 0, 5e8, time.UTC))
		}},
		{"since equals until", "since=2026-12-01T10:00:00Z&until=2026-12-01T10:00:00Z", "", nil},
		{"unknown filter", "org=x", "org", nil},
		{"given twice", "status=sent&status=bounce", "status", nil},
		{"bad type", "type=message", "type", nil},
		{"bad outcome", "outcome=great", "outcome", nil},
		{"bad status", "status=opened", "status", nil},
		{"http status not a number", "httpStatus=5xx", "httpStatus", nil},
		{"http status out of range", "httpStatus=600", "httpStatus", nil},
		{"empty webhook id", "webhookId=", "webhookId", nil},
		{"since not RFC 3339", "since=yesterday", "since", nil},
		{"until a date only", "until=2026-12-01", "until", nil},
		{"since after until", "since=2026-12-01T11:00:00Z&until=2026-12-01T10:00:00Z", "since", nil},
		{"limit zero", "limit=0", "limit", nil},
		{"limit too large", "limit=501", "limit", nil},
		{"limit not a number", "limit=ten", "limit", nil},
		{"cursor not base64", "cursor=***", "cursor", nil},
		{"cursor not an id", "cursor=" + cursorOf("abc"), "cursor", nil},
		{"cursor id with a sign", "cursor=" + cursorOf("+1-2"), "cursor", nil},
		{"cursor padded", "cursor=" + cursorOf("1-2") + "=", "cursor", nil},
		{"cursor 0-0", "cursor=MC0w", "cursor", nil}, // Redis: ERR invalid end ID
		{"cursor 0-1", "cursor=" + cursorOf("0-1"), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ParseQuery(v)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if tc.check != nil && !tc.check(q) {
					t.Errorf("parsed as %+v", q)
				}
				return
			}
			fe, ok := err.(*FieldError)
			if !ok || fe.Field != tc.field || fe.Message == "" {
				t.Errorf("error %v, want a FieldError naming %s", err, tc.field)
			}
		})
	}
}

// A cursor that parses is the encoding of exactly one stream id above
// 0-0, and encodes back to itself; nothing panics.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{cursorOf("0-0"), cursorOf("1700000000000-12"), cursorOf("18446744073709551615-18446744073709551615"), "", "MS0y", "***", cursorOf("01-2")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseCursor(s)
		if err != nil {
			return
		}
		if id == (streamID{}) {
			t.Fatalf("cursor %q is id 0-0, which Redis refuses as an exclusive end", s)
		}
		if back := cursorOf(id.String()); back != s {
			t.Fatalf("cursor %q is id %s, which encodes as %q", s, id, back)
		}
	})
}

// The success rate is rounded to 4 decimals; nil without attempts.
func TestSuccessRate(t *testing.T) {
	for _, tc := range []struct {
		attempts map[string]int64
		want     float64 // -1: nil
	}{
		{nil, -1},
		{map[string]int64{"success": 1, "retryable": 2}, 0.3333},
		{map[string]int64{"success": 2, "error": 1}, 0.6667},
		{map[string]int64{"success": 9999, "rejected": 1}, 0.9999},
		{map[string]int64{"success": 99999, "rejected": 1}, 1},
		{map[string]int64{"success": 1, "rejected": 99999}, 0},
		{map[string]int64{"success": 7}, 1},
	} {
		got := Counts{Attempts: tc.attempts}.successRate()
		if (got == nil) != (tc.want < 0) || (got != nil && *got != tc.want) {
			t.Errorf("%v: %v, want %v", tc.attempts, got, tc.want)
		}
	}
}
