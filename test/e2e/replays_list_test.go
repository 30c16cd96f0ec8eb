package e2e

import (
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// GET /v1/dlq/replays lists the jobs, newest first; an org token sees its
// organisation's jobs only; a bad limit is refused naming it.
func TestListReplayJobs(t *testing.T) {
	h := start(t, withAdminJWT)
	var a, b replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgA", "dryRun": true}, &a); code != 202 {
		t.Fatalf("start A: %d", code)
	}
	time.Sleep(5 * time.Millisecond) // a later start time
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"org": "orgB", "dryRun": true}, &b); code != 202 {
		t.Fatalf("start B: %d", code)
	}
	var all struct{ Replays []replay.Progress }
	h.eventually("both jobs listed", 20*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays", nil, &all)
		return len(all.Replays) == 2
	})
	if all.Replays[0].ID != b.ID || all.Replays[1].ID != a.ID {
		t.Errorf("listed %s, %s; want %s (newest) then %s", all.Replays[0].ID, all.Replays[1].ID, b.ID, a.ID)
	}
	var mine struct{ Replays []replay.Progress }
	if code := h.callAs(adminJWT(t, "org:orgA", time.Hour, adminJWTSecret), "GET", "/v1/dlq/replays", nil, &mine); code != 200 ||
		len(mine.Replays) != 1 || mine.Replays[0].ID != a.ID {
		t.Errorf("org:orgA sees %d %+v, want only its job", code, mine.Replays)
	}
	var one struct{ Replays []replay.Progress }
	if code := h.call("GET", "/v1/dlq/replays?limit=1", nil, &one); code != 200 || len(one.Replays) != 1 {
		t.Errorf("limit=1: %d, %d jobs", code, len(one.Replays))
	}
	var e struct{ Error struct{ Field string } }
	if code := h.callInvalid("GET", "/v1/dlq/replays?limit=0", nil, &e); code != 400 || e.Error.Field != "limit" {
		t.Errorf("limit=0: %d %+v", code, e)
	}
}
