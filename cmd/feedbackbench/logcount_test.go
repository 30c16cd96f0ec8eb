package main

import (
	"bytes"
	"slices"
	"testing"
)

// logCount counts warnings, errors and lines that are not JSON by message,
// whatever the writes' boundaries, lists them errors first and the most
// frequent first, and passes everything through.
func TestLogCount(t *testing.T) {
	var out bytes.Buffer
	l := newLogCount(&out)
	log := `{"level":"WARN","msg":"webhook URLs may use plain http or reach private addresses: for tests and development only"}
{"level":"INFO","msg":"started"}
{"level":"ERROR","msg":"dependency down: fetching paused"}
not JSON
{"level":"WARN","msg":"a warning"}
{"level":"WARN","msg":"redis slow"}
{"level":"ERROR","msg":"dependency down: fetching paused"}
{"level":"WARN","msg":"redis slow"}
{"level":"ERROR","msg":"unfinished"`
	for i := 0; i < len(log); i += 7 {
		if _, err := l.Write([]byte(log[i:min(i+7, len(log))])); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != log {
		t.Errorf("passed through %q", out.String())
	}
	want := []string{"2 x ERROR: dependency down: fetching paused", "2 x WARN: redis slow", "1 x WARN: a warning",
		"1 x OTHER: a line that is not JSON: not JSON"}
	if got := l.summary(); !slices.Equal(got, want) {
		t.Errorf("summary %q, want %q", got, want)
	}
}
