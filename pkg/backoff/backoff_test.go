package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestSleep(t *testing.T) {
	cases := []struct {
		name     string
		d        time.Duration
		cancelIn time.Duration // 0: never
		want     bool
		took     time.Duration
	}{
		{name: "whole duration", d: time.Hour, want: true, took: time.Hour},
		{name: "context ends first", d: time.Hour, cancelIn: time.Minute, want: false, took: time.Minute},
		{name: "context ended before", d: time.Hour, cancelIn: -1, want: false, took: 0},
		{name: "zero duration", d: 0, want: true, took: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				switch {
				case c.cancelIn < 0:
					cancel()
				case c.cancelIn > 0:
					time.AfterFunc(c.cancelIn, cancel)
				}
				start := time.Now()
				if got := Sleep(ctx, c.d); got != c.want {
					t.Fatalf("Sleep(%v) = %v, want %v", c.d, got, c.want)
				}
				if took := time.Since(start); took != c.took {
					t.Fatalf("Sleep(%v) took %v, want %v", c.d, took, c.took)
				}
			})
		})
	}
}
