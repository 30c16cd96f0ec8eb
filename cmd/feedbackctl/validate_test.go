package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/feedbackd/feedbackd/pkg/event"
)

func TestEachEventReadsJSONLinesAndDocuments(t *testing.T) {
	pretty, err := os.ReadFile("../../config/examples/event.json")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := os.ReadFile("../../config/examples/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	nLines := strings.Count(strings.TrimSpace(string(lines)), "\n") + 1
	tests := []struct {
		name, in  string
		events    int   // valid ones
		lines     []int // where each event starts
		wantError string
	}{
		{"JSON Lines", string(lines), nLines, nil, ""},
		{"one pretty event", string(pretty), 1, []int{1}, ""},
		{"two pretty events", string(pretty) + "\n" + string(pretty), 2, []int{1, strings.Count(string(pretty), "\n") + 2}, ""},
		{"pretty, broken", "{\n  \"imsOrg\": \n", 0, nil, "line 1: not valid JSON"},
		{"a bad line among good ones", "{}\n" + string(lines), nLines, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			valid := 0
			var starts []int
			err := eachEvent(strings.NewReader(tt.in), func(line int, raw []byte, _ *event.Event, err error) error {
				starts = append(starts, line)
				if err == nil {
					valid++
					if strings.Contains(string(raw), "\n") {
						t.Errorf("line %d: value not compacted", line)
					}
				}
				return nil
			})
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("error %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil || valid != tt.events {
				t.Fatalf("%d valid events, %v; want %d", valid, err, tt.events)
			}
			if tt.lines != nil && !slices.Equal(starts, tt.lines) {
				t.Errorf("events start on lines %v, want %v", starts, tt.lines)
			}
		})
	}
}
