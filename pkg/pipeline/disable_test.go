package pipeline

import (
	"testing"
	"time"
)

func TestFailingReason(t *testing.T) {
	since := time.Date(2026, 11, 27, 10, 2, 3, 456e6, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{120 * time.Hour, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 120h)"},
		{90 * time.Minute, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 1h30m)"},
		{3 * time.Second, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 3s)"},
		{time.Hour + 30*time.Second, "no successful delivery since 2026-11-27T09:02:03Z (delivery.disable_after 1h0m30s)"},
	} {
		if got := failingReason(since, tc.after); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.after, got, tc.want)
		}
	}
}
