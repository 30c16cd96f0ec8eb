package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/feedbackd/feedbackd/schemas"
)

const minimal = `{"requestId":"r1","imsOrg":"org1","sandbox":{"id":"sb1"},"channel":"sms",` +
	`"messageExecution":{"campaignID":"c1"},"messageDeliveryFeedback":{"feedbackStatus":{"value":"sent"}}}`

func TestParseSeedPayload(t *testing.T) {
	raw, err := os.ReadFile("testdata/seed-bounce.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Parse(raw)
	if err != nil {
		t.Fatalf("seed payload from the product docs must be valid: %v", err)
	}
	want := Event{Raw: raw, RequestID: "8NoByJneShCdCGRnrGS1t1m3CdA73dhR", Org: "myImsOrg",
		SandboxID: "068abf40-575e-11ea-8512-9b1bfdb82603", Channel: "email",
		CampaignID: "16f24a15-7e21-477c-848a-d5695ca7f137", Status: "bounce"}
	if !reflect.DeepEqual(*ev, want) {
		t.Fatalf("got %+v\nwant %+v", *ev, want)
	}
	if got := ev.Key(); got != "myImsOrg/068abf40-575e-11ea-8512-9b1bfdb82603" {
		t.Fatalf("Key() = %q", got)
	}
	// The seed payload already has eventType and no eventId: the body is
	// the record, byte for byte.
	if body := ev.Body(nil); !bytes.Equal(body, raw) {
		t.Fatalf("body changed a payload that needed no change:\n%s", body)
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name, raw, reason, field string
	}{
		{"not json", `{"requestId":`, "invalid_json", ""},
		{"trailing garbage", minimal + `x`, "invalid_json", ""},
		{"array", `[1,2]`, "schema", ""},
		{"missing imsOrg", strings.Replace(minimal, `"imsOrg":"org1",`, "", 1), "schema", "imsOrg"},
		{"missing sandbox.id", strings.Replace(minimal, `{"id":"sb1"}`, `{}`, 1), "schema", "sandbox.id"},
		{"missing status", strings.Replace(minimal, `{"value":"sent"}`, `{}`, 1), "schema", "messageDeliveryFeedback.feedbackStatus.value"},
		{"missing campaign", strings.Replace(minimal, `{"campaignID":"c1"}`, `{}`, 1), "schema", "messageExecution.campaignID"},
		{"bad channel", strings.Replace(minimal, `"sms"`, `"push"`, 1), "schema", "channel"},
		{"org with slash", strings.Replace(minimal, `"org1"`, `"a/b"`, 1), "schema", "imsOrg"},
		{"eventId with newline", strings.Replace(minimal, `{"requestId"`, `{"eventId":"a\nb","requestId"`, 1), "schema", "eventId"},
		{"number status", strings.Replace(minimal, `"value":"sent"`, `"value":3`, 1), "schema", "messageDeliveryFeedback.feedbackStatus.value"},
		{"too large", `{"x":"` + strings.Repeat("a", MaxSize) + `"}`, "too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.raw))
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("want *InvalidError, got %v", err)
			}
			if ie.Reason != tt.reason || ie.Field != tt.field {
				t.Fatalf("got reason %q field %q (%v), want %q %q", ie.Reason, ie.Field, ie, tt.reason, tt.field)
			}
		})
	}
}

func TestBody(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"adds eventType", `{"a":1}`, `{"a":1,"eventType":"message.feedback"}`},
		{"keeps eventType", `{"eventType":"x","a":1}`, `{"eventType":"x","a":1}`},
		{"null eventType", `{"a":1,"eventType":null}`, `{"a":1,"eventType":"message.feedback"}`},
		{"removes first eventId", `{"eventId":"e","a":1,"eventType":"t"}`, `{"a":1,"eventType":"t"}`},
		{"removes last eventId", `{"a":1,"eventType":"t","eventId":"e"}`, `{"a":1,"eventType":"t"}`},
		{"removes duplicate eventIds", `{"eventId":"e","a":1,"eventId":"f"}`, `{"a":1,"eventType":"message.feedback"}`},
		{"escaped key", `{"event\u0049d":"e","a":1}`, `{"a":1,"eventType":"message.feedback"}`},
		{"only eventId", `{"eventId":"e"}`, `{"eventType":"message.feedback"}`},
		{"empty", `{}`, `{"eventType":"message.feedback"}`},
		{"nested eventId kept", `{"x":{"eventId":"e"},"eventType":"t"}`, `{"x":{"eventId":"e"},"eventType":"t"}`},
		{"keeps whitespace and number text", "{\n  \"n\": 1.50E+3 ,\n  \"eventId\": \"e\"\n}", "{\n  \"n\": 1.50E+3,\"eventType\":\"message.feedback\"\n}"},
		{"strings with braces", `{"a":"}{\"","eventId":"]"}`, `{"a":"}{\"","eventType":"message.feedback"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := renderBody(nil, []byte(tt.in))
			if string(got) != tt.want {
				t.Fatalf("renderBody(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestBodyMatchesDeliveredSchema(t *testing.T) {
	raw := []byte(strings.Replace(minimal, `{"requestId"`, `{"eventId":"ev-1","requestId"`, 1))
	ev, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "ev-1" {
		t.Fatalf("ID = %q", ev.ID)
	}
	var doc any
	if err := json.Unmarshal(ev.Body(nil), &doc); err != nil {
		t.Fatal(err)
	}
	if err := schemas.MustCompile(schemas.DeliveredPayload).Validate(doc); err != nil {
		t.Fatalf("body does not match delivered-payload schema: %v", err)
	}
}

func TestDeriveIDStable(t *testing.T) {
	a := DeriveID("feedback.sent", 3, 42)
	if a != DeriveID("feedback.sent", 3, 42) || a == DeriveID("feedback.sent", 3, 43) || a == DeriveID("feedback.sent", 4, 42) {
		t.Fatal("DeriveID must be a function of topic, partition and offset only")
	}
	if !strings.HasPrefix(a, "msg_") || len(a) != 36 {
		t.Fatalf("DeriveID = %q", a)
	}
}

// FuzzParseAndBody checks, for any input, that Parse never panics and that
// for every valid event the body is valid JSON equal to the event minus
// eventId, with eventType filled in.
func FuzzParseAndBody(f *testing.F) {
	seed, _ := os.ReadFile("testdata/seed-bounce.json")
	f.Add(seed)
	f.Add([]byte(minimal))
	f.Add([]byte(strings.Replace(minimal, `{"requestId"`, `{"eventId":"x","eventType":null, "requestId"`, 1)))
	f.Add([]byte(`{"a":"\"}","b":[{"c":"]"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if json.Valid(raw) && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			checkBody(t, raw)
		}
		ev, err := Parse(raw)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Parse error is not *InvalidError: %v", err)
			}
			return
		}
		if ev.Org == "" || ev.SandboxID == "" || ev.Status == "" {
			t.Fatalf("valid event with empty routing field: %+v", ev)
		}
	})
}

func checkBody(t *testing.T, raw []byte) {
	t.Helper()
	body := renderBody(nil, raw)
	var got, want map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body of %q is not JSON: %q: %v", raw, body, err)
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	delete(want, "eventId")
	if want["eventType"] == nil {
		want["eventType"] = DefaultType
	}
	// encoding/json folds keys that differ only in case; compare only
	// when the input has no such keys, as receivers decode exactly.
	if !reflect.DeepEqual(got, want) && !hasFoldedKeys(raw) {
		t.Fatalf("body of %q is %q", raw, body)
	}
}

func hasFoldedKeys(raw []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return true
	}
	seen := map[string]bool{}
	for k := range m {
		if seen[strings.ToLower(k)] {
			return true
		}
		seen[strings.ToLower(k)] = true
	}
	return false
}

// benchEvents are the seed event as written (indented) and compact, as
// senders' JSON encoders write it, in that order.
func benchEvents(b *testing.B) []struct {
	name string
	raw  []byte
} {
	b.Helper()
	raw, err := os.ReadFile("testdata/seed-bounce.json")
	if err != nil {
		b.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		raw  []byte
	}{{"indented", raw}, {"compact", compact.Bytes()}}
}

func BenchmarkParse(b *testing.B) {
	for _, ev := range benchEvents(b) {
		b.Run(ev.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(ev.raw)))
			for b.Loop() {
				if _, err := Parse(ev.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBody(b *testing.B) {
	for _, ev := range benchEvents(b) {
		b.Run(ev.name, func(b *testing.B) {
			parsed, err := Parse(ev.raw)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			b.SetBytes(int64(len(ev.raw)))
			for b.Loop() {
				buf = parsed.Body(buf[:0])
			}
		})
	}
}

// The validator reports the faults of different properties in map order;
// Parse must still name the same one every time.
func TestParseSeveralFaultsIsDeterministic(t *testing.T) {
	raw := []byte(`{"requestId":"0","imsOrg":"0","sandbox":{"name":1},"channel":"","messageExecution":{},` +
		`"messageDeliveryFeedback":{},"eventId":1,"eventType":""}`)
	var first string
	for i := range 50 {
		_, err := Parse(raw)
		var ie *InvalidError
		if !errors.As(err, &ie) {
			t.Fatalf("want *InvalidError, got %v", err)
		}
		if i == 0 {
			first = ie.Class()
		} else if ie.Class() != first {
			t.Fatalf("error class %q, earlier %q", ie.Class(), first)
		}
	}
	if first != "schema: channel: enum" {
		t.Fatalf("error class %q, want the fault at the first location in name order", first)
	}
}

// A routed member given twice is an invalid event, named in its class: a
// receiver that keeps the first imsOrg would see another organisation than
// the one feedbackd routed the event to.
func TestParseRefusesDuplicateRoutedMembers(t *testing.T) {
	base := `{"requestId":"r1","imsOrg":"A","sandbox":{"id":"sb1"},"channel":"email","messageExecution":{"campaignID":"c1"},"messageDeliveryFeedback":{"feedbackStatus":{"value":"sent"}}}`
	tests := []struct{ raw, class string }{
		{strings.Replace(base, `"imsOrg":"A"`, `"imsOrg":"A","imsOrg":"B"`, 1), "duplicate_key: imsOrg"},
		{strings.Replace(base, `{"id":"sb1"}`, `{"id":"sb1","id":"sb2"}`, 1), "duplicate_key: sandbox.id"},
		{strings.Replace(base, `{"campaignID":"c1"}`, `{"campaignID":"c1","campaignID":"c2"}`, 1), "duplicate_key: messageExecution.campaignID"},
		{strings.Replace(base, `{"value":"sent"}`, `{"value":"sent","value":"bounce"}`, 1), "duplicate_key: messageDeliveryFeedback.feedbackStatus.value"},
		{strings.Replace(base, `"channel":"email"`, `"channel":"email","ch\u0061nnel":"sms"`, 1), "duplicate_key: channel"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.raw))
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Class() != tt.class {
			t.Errorf("Parse(%s) = %v, want class %q", tt.raw, err, tt.class)
		}
	}
}
