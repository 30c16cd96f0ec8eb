package retry

import (
	"reflect"
	"testing"
	"time"
)

var schedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 30 * time.Second, time.Hour}

func TestNext(t *testing.T) {
	p := Policy{Schedule: schedule, Jitter: 0.2, Rand: func() float64 { return 0.5 }}
	tests := []struct {
		name       string
		attempts   int
		retryAfter time.Duration
		tier       time.Duration
		delay      time.Duration
		ok         bool
	}{
		{"first failure", 1, 0, 5 * time.Second, 4500 * time.Millisecond, true},
		{"second", 2, 0, 30 * time.Second, 27 * time.Second, true},
		{"repeated delay shares a tier", 4, 0, 30 * time.Second, 27 * time.Second, true},
		{"last", 5, 0, time.Hour, 54 * time.Minute, true},
		{"exhausted", 6, 0, 0, 0, false},
		{"no attempt yet", 0, 0, 0, 0, false},
		{"retry-after rounds up to a tier and is not cut by jitter", 1, 29 * time.Second, 30 * time.Second, 29 * time.Second, true},
		{"retry-after beyond the longest tier is capped", 1, 3 * time.Hour, time.Hour, time.Hour, true},
		{"retry-after shorter than the schedule is ignored", 3, time.Second, 2 * time.Minute, 108 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tier, delay, ok := p.Next(tt.attempts, tt.retryAfter)
			if tier != tt.tier || delay != tt.delay || ok != tt.ok {
				t.Fatalf("Next(%d, %s) = %s, %s, %v; want %s, %s, %v", tt.attempts, tt.retryAfter, tier, delay, ok, tt.tier, tt.delay, tt.ok)
			}
		})
	}
	if got := p.MaxAttempts(); got != 6 {
		t.Fatalf("MaxAttempts = %d", got)
	}
}

func TestTiersAndTopics(t *testing.T) {
	p := Policy{Schedule: schedule}
	var names []string
	for _, tier := range p.Tiers() {
		names = append(names, Topic("feedback.retry", tier))
	}
	want := []string{"feedback.retry.5s", "feedback.retry.30s", "feedback.retry.2m", "feedback.retry.1h"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("topics = %v", names)
	}
	for d, want := range map[time.Duration]time.Duration{0: 5 * time.Second, 6 * time.Second: 30 * time.Second, 30 * time.Second: 30 * time.Second, 5 * time.Hour: time.Hour} {
		if got := p.TierFor(d); got != want {
			t.Errorf("TierFor(%s) = %s, want %s", d, got, want)
		}
	}
	if got := p.Span(); got != time.Hour+3*time.Minute+5*time.Second {
		t.Errorf("Span = %s", got)
	}
	if got := TierName(90 * time.Minute); got != "1h30m" {
		t.Fatalf("TierName(90m) = %s", got)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Policy{{}, {Schedule: []time.Duration{time.Millisecond}}, {Schedule: schedule, Jitter: 1}} {
		if p.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", p)
		}
	}
	if err := (Policy{Schedule: schedule, Jitter: 0.1}).Validate(); err != nil {
		t.Fatal(err)
	}
}
