package replay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Every bad recovery request is refused naming its field; a good one is
// resolved to the window its job keeps.
func TestParseRecovery(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body string
		field      string // the field named; "-" for a valid request
	}{
		{"valid", `{"since":"2026-12-02T06:00:00Z","until":"2026-12-02T07:00:00Z"}`, "-"},
		{"every field", `{"since":"2026-12-02T06:00:00+01:00","until":"2026-12-02T07:00:00Z","statuses":["bounce","error"],"dryRun":true,"rate":50}`, "-"},
		{"until in the future is now", `{"since":"2026-12-02T07:00:00Z","until":"2027-01-01T00:00:00Z"}`, "-"},
		{"durations ago", `{"since":"2h","until":"1h"}`, "-"},
		{"missing since", `{"until":"2026-12-02T07:00:00Z"}`, "since"},
		{"missing until", `{"since":"2026-12-02T07:00:00Z"}`, "until"},
		{"unreadable since", `{"since":"yesterday","until":"2026-12-02T07:00:00Z"}`, "since"},
		{"unreadable until", `{"since":"2026-12-02T06:00:00Z","until":"2026-13-02T07:00:00Z"}`, "until"},
		{"since after until", `{"since":"2026-12-02T07:00:00Z","until":"2026-12-02T06:00:00Z"}`, "since"},
		{"since equal to until", `{"since":"2026-12-02T07:00:00Z","until":"2026-12-02T07:00:00Z"}`, "since"},
		{"since in the future", `{"since":"2027-01-01T00:00:00Z","until":"2027-01-02T00:00:00Z"}`, "since"},
		{"unknown status", `{"since":"2h","until":"1h","statuses":["bounce","opened"]}`, "statuses"},
		{"statuses not a list", `{"since":"2h","until":"1h","statuses":"bounce"}`, "statuses"},
		{"rate 0", `{"since":"2h","until":"1h","rate":0}`, "rate"},
		{"negative rate", `{"since":"2h","until":"1h","rate":-5}`, "rate"},
		{"rate not a number", `{"since":"2h","until":"1h","rate":"fast"}`, "rate"},
		{"unknown field", `{"since":"2h","until":"1h","colour":"red"}`, "colour"},
		{"a dead-letter filter", `{"since":"2h","until":"1h","reason":"rejected"}`, "reason"},
		{"not an object", `[1]`, ""},
		{"two objects", `{"since":"2h","until":"1h"}{}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRecovery("orgA", "prod", []byte(tc.body), now)
			var re *RequestError
			valid := tc.field == "-"
			switch {
			case valid && err != nil:
				t.Fatalf("refused: %v", err)
			case valid:
				since, until, werr := req.window()
				if werr != nil || !since.Before(until) || until.After(now) || !strings.HasPrefix(req.ID(), "rc-") || req.Source != SourceInput {
					t.Fatalf("resolved to %+v (%v)", req, werr)
				}
			case !errors.As(err, &re):
				t.Fatalf("accepted or not a RequestError: %+v %v", req, err)
			case re.Field != tc.field:
				t.Fatalf("field %q, want %q (%s)", re.Field, tc.field, re.Message)
			}
		})
	}
}

// A recovery is resolved once: its window and statuses as its job keeps
// them, and a job id of its own for each request.
func TestRecoveryResolved(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	a, err := ParseRecovery("orgA", "prod", []byte(`{"since":"2026-12-02T07:00:00+01:00","until":"2030-01-01T00:00:00Z","statuses":["error","bounce","error"],"rate":20}`), now)
	if err != nil {
		t.Fatal(err)
	}
	if a.Since != "2026-12-02T06:00:00.000Z" || a.Until != "2026-12-02T08:00:00.000Z" || strings.Join(a.Statuses, ",") != "bounce,error" || a.Rate != 20 {
		t.Fatalf("resolved to %+v", a)
	}
	again, err := a.Recovery(now.Add(time.Hour))
	if err != nil || again.ID() != a.ID() || again.Until != a.Until {
		t.Fatalf("resolving again changed it: %+v %v", again, err)
	}
	b, _ := ParseRecovery("orgA", "prod", []byte(`{"since":"2026-12-02T07:00:00+01:00","until":"2030-01-01T00:00:00Z"}`), now)
	if a.ID() == b.ID() {
		t.Fatal("two recoveries share a job id")
	}
}
