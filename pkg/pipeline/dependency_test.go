package pipeline

import (
	"errors"
	"fmt"
	"testing"
)

func TestJudge(t *testing.T) {
	slow := fmt.Errorf("redis slow: no answer within 2s: %w", ErrSlow)
	down := errors.New("redis: unreachable (standalone 127.0.0.1:1): connection refused")
	tests := []struct {
		name string
		s    depState
		err  error
		want depState
		act  depAction
	}{
		{"up stays up", depState{}, nil, depState{}, depNone},
		{"down pauses at once", depState{}, down, depState{paused: true}, depPause},
		{"first slow answer warns", depState{}, slow, depState{slow: 1}, depSlow},
		{"second slow answer waits", depState{slow: 1}, slow, depState{slow: 2}, depNone},
		{"third slow answer in a row pauses", depState{slow: slowChecks - 1}, slow, depState{paused: true, slow: slowChecks}, depPause},
		{"an answer ends a slow spell", depState{slow: 2}, nil, depState{}, depBack},
		{"down after slow answers pauses at once", depState{slow: 1}, down, depState{paused: true}, depPause},
		{"paused and still down", depState{paused: true}, down, depState{paused: true}, depNone},
		{"paused and still slow", depState{paused: true, slow: 3}, slow, depState{paused: true, slow: 3}, depNone},
		{"paused and answering resumes", depState{paused: true}, nil, depState{}, depResume},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, act := judge(tt.s, tt.err)
			if got != tt.want || act != tt.act {
				t.Errorf("judge(%+v, %v) = %+v, %v; want %+v, %v", tt.s, tt.err, got, act, tt.want, tt.act)
			}
		})
	}
}

// A spell of slow answers pauses only on its slowChecks-th answer, never
// before, and an answer in between starts the count again.
func TestJudgeSlowSpell(t *testing.T) {
	slow := fmt.Errorf("x: %w", ErrSlow)
	var s depState
	var act depAction
	for i := 1; i < slowChecks; i++ {
		if s, act = judge(s, slow); act == depPause || s.paused {
			t.Fatalf("paused after %d slow answers, want %d", i, slowChecks)
		}
	}
	if s, act = judge(s, nil); act != depBack {
		t.Fatalf("answer after slow ones: %v", act)
	}
	for i := 1; i <= slowChecks; i++ {
		s, act = judge(s, slow)
	}
	if act != depPause || !s.paused {
		t.Fatalf("after %d slow answers in a row: %+v, %v; want paused", slowChecks, s, act)
	}
}
