package outcome

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// The append encoder writes what encoding/json writes, byte for byte.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 2, 0, 123456789, time.UTC)
	full := Record{Type: TypeAttempt, Time: at, Instance: "host/1", WebhookID: "evt-1", EventID: "evt-1", RequestID: "r-1",
		Org: "orgA", Sandbox: "prod", Channel: "email", Status: "bounce", CampaignID: "c-1", Outcome: "retryable",
		Reason: "rejected", Attempt: 3, HTTPCode: 503, DurationMs: Millis(12345 * time.Microsecond), ErrorClass: "http_503",
		Response: `{"error":"busy"}`, ResponseTruncated: true, RetryInMs: 5000, DisabledReason: "endpoint answered 410 Gone",
		Source: "feedback.bounce/0/42"}
	with := func(f func(*Record)) Record { r := full; f(&r); return r }
	f := func(v float64) *float64 { return &v }
	for name, r := range map[string]Record{
		"zero":       {},
		"full":       full,
		"minimal":    {Type: TypeOutcome, Time: at, Instance: "i"},
		"local time": with(func(r *Record) { r.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -5*3600-30*60)) }),
		"quotes and escapes": with(func(r *Record) {
			r.Response = "a\"b\\c/d\n\r\t\b\f\x00\x01\x1f\x7f <script>&amp;</script> \u2028\u2029 é 日本 🙂"
		}),
		"invalid utf-8": with(func(r *Record) { r.Response = "ok\xff\xfe then \xe2\x82 cut \xf0\x9f\x99" }),
		"negative":      with(func(r *Record) { r.Attempt, r.HTTPCode, r.RetryInMs, r.DurationMs = -1, -2, -3, f(-0.5) }),
		"zero duration": with(func(r *Record) { r.DurationMs = f(0) }),
		"tiny duration": with(func(r *Record) { r.DurationMs = f(1.5e-9) }),
		"huge duration": with(func(r *Record) { r.DurationMs = f(3e21) }),
		"long duration": with(func(r *Record) { r.DurationMs = f(123456789.001) }),
		"max ints":      with(func(r *Record) { r.Attempt, r.RetryInMs = math.MaxInt, math.MinInt64 }),
		"year 9999":     with(func(r *Record) { r.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) }),
	} {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(&r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// What encoding/json cannot encode, neither does AppendJSON.
func TestAppendJSONRefuses(t *testing.T) {
	nan := math.NaN()
	for name, r := range map[string]Record{
		"year 10000": {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":    {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"NaN":        {DurationMs: &nan},
	} {
		if _, err := json.Marshal(&r); err == nil {
			t.Fatalf("%s: encoding/json encodes it", name)
		}
		if b, err := r.AppendJSON([]byte("x")); err == nil || string(b) != "x" {
			t.Errorf("%s: %q, %v; want an error and b unchanged", name, b, err)
		}
	}
}

// Any record encodes to valid JSON that decodes to the same record, and to
// encoding/json's bytes.
func FuzzAppendJSON(f *testing.F) {
	f.Add("message.attempt", int64(1764669720123456789), "host/1", "evt-1", "orgA", "prod", "retryable", `{"error":"busy"}`, "feedback.bounce/0/42", 3, 503, 12.345, true, int64(5000))
	f.Add("", int64(0), "", "", "", "", "", "", "", 0, 0, 0.0, false, int64(0))
	f.Add("\u2028<&>", int64(-62135596800), "\x00\xff", "\"\\", "日本", "\xe2\x82", "\t\n", "\x7f\x1f", "🙂", -1, -1, 1e-7, false, int64(-1))
	f.Fuzz(func(t *testing.T, typ string, nanos int64, instance, id, org, sandbox, out, response, source string,
		attempt, status int, ms float64, truncated bool, retryIn int64) {
		r := Record{Type: typ, Time: time.Unix(0, nanos).UTC(), Instance: instance, WebhookID: id, EventID: id, Org: org,
			Sandbox: sandbox, Outcome: out, Response: response, ResponseTruncated: truncated, Source: source,
			Attempt: attempt, HTTPCode: status, RetryInMs: retryIn}
		if ms != 0 {
			r.DurationMs = &ms
		}
		want, wantErr := json.Marshal(&r)
		got, err := r.Marshal()
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, encoding/json's %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !json.Valid(got) {
			t.Fatalf("not JSON: %s", got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
		var back Record
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		// Decoding is lossy only where encoding must be: invalid UTF-8
		// becomes U+FFFD, and the time keeps its instant.
		norm := r
		for _, s := range []*string{&norm.Type, &norm.Instance, &norm.WebhookID, &norm.EventID, &norm.Org, &norm.Sandbox, &norm.Outcome, &norm.Response, &norm.Source} {
			*s = string([]rune(*s))
		}
		if !back.Time.Equal(norm.Time) {
			t.Fatalf("time %v, want %v", back.Time, norm.Time)
		}
		back.Time = norm.Time
		if !reflect.DeepEqual(back, norm) {
			t.Fatalf("decoded %+v\nwant    %+v", back, norm)
		}
		// One Encoder for records of the same instant, of the same instant
		// in another zone and of another instant: each as encoding/json.
		var e Encoder
		for _, at := range []time.Time{r.Time, r.Time, r.Time.In(time.FixedZone("", 5*3600+1800)), r.Time.Add(time.Nanosecond), r.Time,
			r.Time.In(time.FixedZone("", 30*3600)), r.Time.In(time.FixedZone("", -24*3600)), r.Time.In(time.FixedZone("", 1<<36)), r.Time} {
			r.Time = at
			want, wantErr := json.Marshal(&r)
			got, err := e.AppendJSON(nil, &r)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("one Encoder, time %v: got %s (%v)\nwant %s (%v)", at, got, err, want, wantErr)
			}
		}
		// And for records about another: the fields swapped one by one.
		for _, f := range []*string{&r.Instance, &r.WebhookID, &r.EventID, &r.Org, &r.Sandbox} {
			*f, r.Outcome = r.Outcome, *f
			want, wantErr := json.Marshal(&r)
			got, err := e.AppendJSON(nil, &r)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("one Encoder, another record: got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
			}
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	r := Record{Type: TypeAttempt, Time: time.Now().UTC(), Instance: "host/1", WebhookID: "evt-0123456789", EventID: "evt-0123456789",
		RequestID: "req-0123456789", Org: "org-17", Sandbox: "prod", Channel: "email", Status: "sent", CampaignID: "c-1",
		Outcome: "success", Attempt: 1, HTTPCode: 200, DurationMs: Millis(1234 * time.Microsecond), Response: "ok",
		Source: "feedback.sent/3/123456"}
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// safe8 agrees with the byte table for every byte at every place of a
// word, and for words of several unsafe bytes.
func TestSafe8(t *testing.T) {
	isSafe := func(c byte) bool { return c < utf8.RuneSelf && safe[c] }
	for c := range 256 {
		for pos := range 8 {
			for _, fill := range []byte{'a', 0x20, 0x7f, '%', '?', '[', ']'} {
				w := bytes.Repeat([]byte{fill}, 8)
				w[pos] = byte(c)
				if got, want := safe8(string(w)), isSafe(byte(c)) && isSafe(fill); got != want {
					t.Fatalf("safe8(%q) = %t, want %t", w, got, want)
				}
			}
		}
	}
	for _, w := range []string{"\x00\x00\x00\x00\x00\x00\x00\x00", "\xff\xff\xff\xff\xff\xff\xff\xff", "a\x00\x01b\x1fc\"<", "&&>>\\\\\"\"", "abcdefg\x80"} {
		if safe8(w) {
			t.Errorf("safe8(%q) = true", w)
		}
	}
}

// An Encoder reuses the time it formatted only for the same instant in the
// same zone.
func TestEncoderReusesTime(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 2, 0, 123456789, time.UTC)
	var e Encoder
	for _, tm := range []time.Time{at, at, at.Add(time.Nanosecond), at.In(time.FixedZone("x", 3600)), at, {}, at} {
		r := Record{Type: TypeOutcome, Time: tm, Instance: "i"}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.AppendJSON(nil, &r)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: got %s, %v\nwant %s", tm, got, err, want)
		}
	}
}

// An Encoder copies what it encoded of the last record only for a record
// about the same: one field of it changed at a time, it writes that one.
func TestEncoderReusesWho(t *testing.T) {
	base := Record{Type: TypeAttempt, Time: time.Date(2026, 12, 2, 10, 2, 0, 0, time.UTC), Instance: "i", WebhookID: "w",
		EventID: "e", RequestID: "q", Org: "o", Sandbox: "s", Channel: "email", Status: "sent", CampaignID: "c", Outcome: "success"}
	fields := map[string]func(*Record){
		"instance": func(r *Record) { r.Instance = "i2" }, "webhookId": func(r *Record) { r.WebhookID = "w2" },
		"eventId": func(r *Record) { r.EventID = "" }, "requestId": func(r *Record) { r.RequestID = "q2" },
		"imsOrg": func(r *Record) { r.Org = "o2" }, "sandbox": func(r *Record) { r.Sandbox = "s2" },
		"channel": func(r *Record) { r.Channel = "sms" }, "feedbackStatus": func(r *Record) { r.Status = "bounce" },
		"campaignID": func(r *Record) { r.CampaignID = "c<2>" }, "time": func(r *Record) { r.Time = r.Time.Add(time.Millisecond) },
		"type only": func(r *Record) { r.Type = TypeOutcome },
	}
	var e Encoder
	for name, change := range fields {
		other := base
		change(&other)
		for i, r := range []Record{base, other, other, base} {
			want, err := json.Marshal(&r)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.AppendJSON(nil, &r); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s, record %d: got %s, %v\nwant %s", name, i, got, err, want)
			}
		}
	}
}
