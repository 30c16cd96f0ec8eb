package pipeline

import (
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/header"
)

// Every copy of an event shares its dedupe key; different events that share
// an eventId (other tenants, or an input record recreated at a reused
// offset) do not.
func TestDedupeKey(t *testing.T) {
	at := time.UnixMilli(1_764_000_000_123)
	input := &header.Retry{WebhookID: "evt-42", OriginTime: at}
	// A retry record carries the input record's timestamp in milliseconds.
	parsed, err := header.ParseRetry(header.Retry{WebhookID: "evt-42", OriginTime: at, DueAt: at, Attempts: 1}.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	orgA := &event.Event{Org: "orgA", SandboxID: "prod"}
	orgB := &event.Event{Org: "orgB", SandboxID: "prod"}
	if a, b := dedupeKey(orgA, input), dedupeKey(orgA, &parsed); a != b {
		t.Errorf("an input record and its retry record: %q != %q", a, b)
	}
	for _, c := range []struct {
		name string
		ev   *event.Event
		st   *header.Retry
	}{
		{"another tenant", orgB, input},
		{"another sandbox", &event.Event{Org: "orgA", SandboxID: "dev"}, input},
		{"another input record", orgA, &header.Retry{WebhookID: "evt-42", OriginTime: at.Add(time.Millisecond)}},
	} {
		if dedupeKey(c.ev, c.st) == dedupeKey(orgA, input) {
			t.Errorf("%s has the same dedupe key", c.name)
		}
	}
}

// A recovery job's copy of an event is a delivery of its own, once per
// job: its key differs from the original's and from another job's, and
// its retry records share it.
func TestDedupeKeyOfARecovery(t *testing.T) {
	at := time.UnixMilli(1_764_000_000_123)
	ev := &event.Event{Org: "orgA", SandboxID: "prod"}
	orig := &header.Retry{WebhookID: "evt-42", OriginTime: at}
	job1 := &header.Retry{WebhookID: "evt-42", OriginTime: at, RecoverJob: "rc-1"}
	job2 := &header.Retry{WebhookID: "evt-42", OriginTime: at, RecoverJob: "rc-2"}
	if k := dedupeKey(ev, job1); k == dedupeKey(ev, orig) || k == dedupeKey(ev, job2) {
		t.Errorf("a recovery shares its dedupe key %q", k)
	}
	again := *job1
	if dedupeKey(ev, &again) != dedupeKey(ev, job1) {
		t.Error("a recovered record read twice has two keys")
	}
}
