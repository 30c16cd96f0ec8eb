package pipeline

import (
	"context"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Goroutines that finish while maxIdle others wait for a function end.
func TestGoroutinesKeepAtMostMaxIdle(t *testing.T) {
	g := &goroutines{next: make(chan func()), stop: make(chan struct{}), maxIdle: 3}
	defer g.close()
	base := runtime.NumGoroutine()
	var running, finished sync.WaitGroup
	release := make(chan struct{})
	for range 20 {
		running.Add(1)
		finished.Add(1)
		g.goFunc(func() { running.Done(); <-release; finished.Done() })
	}
	running.Wait() // 20 functions blocked at once: 20 goroutines (counting them here would count other tests' that are ending)
	close(release)
	finished.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine()-base > 3 || g.idle.Load() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left, %d idle; want 3 idle", runtime.NumGoroutine()-base, g.idle.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAdapt(t *testing.T) {
	const least, most = 256, 4096
	slow := load{saturated: true, sched: 100 * time.Microsecond}
	for _, tc := range []struct {
		name  string
		limit int
		l     load
		want  int
	}{
		{"all taken, cores to spare: doubles", 256, slow, 512},
		{"doubling stops at the most", 4000, slow, most},
		{"all taken, cores neither idle nor queued: holds", 1024, load{saturated: true, sched: 2 * time.Millisecond}, 1024},
		{"goroutines queue for a core: down a quarter", 2048, load{saturated: true, sched: 20 * time.Millisecond}, 1536},
		{"even when not all are taken", 2048, load{sched: 20 * time.Millisecond}, 1536},
		{"not all taken: down a sixteenth", 2048, load{sched: 100 * time.Microsecond}, 1920},
		{"never below the least", 260, load{}, least},
		{"queued at the least: stays", least, load{saturated: true, sched: time.Second}, least},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := adapt(tc.limit, least, most, tc.l); got != tc.want {
				t.Errorf("adapt(%d, %+v) = %d, want %d", tc.limit, tc.l, got, tc.want)
			}
		})
	}
}

// Slots grow at once; they shrink as jobs give slots up (a slot given
// back stays taken as ballast), never taking one that is free.
func TestSlotsResize(t *testing.T) {
	s := newSlots(2, 8, prometheus.NewGauge(prometheus.GaugeOpts{Name: "inflight"}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	held := []*slot{s.acquire(ctx), s.acquire(ctx)}
	if s.free() != 1 || s.limit() != 2 { // free is at least 1
		t.Fatalf("free %d, limit %d with 2 of 2 taken", s.free(), s.limit())
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	if s.acquire(short) != nil {
		t.Fatal("a third slot of 2")
	}
	stop()
	s.resize(5)
	if s.limit() != 5 || s.free() != 3 {
		t.Fatalf("after growing to 5: limit %d, free %d", s.limit(), s.free())
	}
	for range 3 {
		held = append(held, s.acquire(ctx))
	}
	s.resize(1) // 5 taken: no ballast can be taken yet
	if s.limit() != 5 {
		t.Fatalf("limit %d while 5 are taken; want 5 until they are given up", s.limit())
	}
	for i, h := range held {
		h.done()
		h.end()
		if want := max(5-(i+1), 1); s.limit() != want {
			t.Fatalf("limit %d after %d of 5 given back; want %d", s.limit(), i+1, want)
		}
	}
	if s.limit() != 1 || s.free() != 1 {
		t.Fatalf("after shrinking to 1: limit %d, free %d", s.limit(), s.free())
	}
	h := s.acquire(ctx)
	short, stop = context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if s.acquire(short) != nil {
		t.Fatal("a second slot of 1")
	}
	h.done()
	h.end()
	// A job that trades its delivery slot takes a settling slot within the
	// limit too.
	h = s.acquire(ctx)
	h.trade()
	if !h.settling || h.delivery {
		t.Fatalf("trade: settling %v, delivery %v", h.settling, h.delivery)
	}
	h2 := s.acquire(ctx)
	h2.trade()
	if h2.settling {
		t.Error("a second settling slot of 1")
	}
}

// Settling slots are as many as the delivery slots, but never more than
// maxSettling: the job after keeps its delivery slot, until a settling
// slot is given back.
func TestSlotsSettlingBound(t *testing.T) {
	ctx := context.Background()
	n := maxSettling + 10
	s := newSlots(n, n, prometheus.NewGauge(prometheus.GaugeOpts{Name: "inflight"}))
	var held []*slot
	for range maxSettling {
		h := s.acquire(ctx)
		h.trade()
		if !h.settling || h.delivery {
			t.Fatalf("settling slot %d of %d: settling %v, delivery %v", len(held)+1, maxSettling, h.settling, h.delivery)
		}
		held = append(held, h)
	}
	over := s.acquire(ctx)
	over.trade()
	if over.settling || !over.delivery {
		t.Fatalf("past maxSettling: settling %v, delivery %v", over.settling, over.delivery)
	}
	held[0].done()
	held[0].end()
	over.trade()
	if !over.settling || over.delivery {
		t.Fatalf("after one was given back: settling %v, delivery %v", over.settling, over.delivery)
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	buckets := []float64{math.Inf(-1), 0.001, 0.004, inf} // (-inf,1ms], (1ms,4ms], (4ms,+inf)
	for _, tc := range []struct {
		name         string
		counts, last []uint64
		want         time.Duration
	}{
		{"nothing new", []uint64{5, 5, 5}, []uint64{5, 5, 5}, 0},
		{"nine in ten fast", []uint64{9, 1, 0}, []uint64{0, 0, 0}, time.Millisecond},
		{"only what is new counts", []uint64{100, 10, 0}, []uint64{100, 0, 0}, 4 * time.Millisecond},
		{"the unbounded bucket is an hour", []uint64{0, 0, 3}, []uint64{0, 0, 0}, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.counts, tc.last, buckets, 0.9); got != tc.want {
				t.Errorf("quantile = %v, want %v", got, tc.want)
			}
		})
	}
}

// slowAttempts counts the attempts in progress that started at least an
// age ago, to the second and never more, across a bucket's reuse.
func TestSlowAttempts(t *testing.T) {
	var a slowAttempts
	t0 := time.Unix(1000, 0)
	s1, s2, s3 := a.start(t0), a.start(t0.Add(100*time.Millisecond)), a.start(t0.Add(900*time.Millisecond))
	late := a.start(t0.Add(1500 * time.Millisecond))
	a.end(s2)
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{
		{1500 * time.Millisecond, 0}, // 0.6 s to 1.5 s old: not counted
		{2100 * time.Millisecond, 2}, // s1 and s3, both over a second old
		{2900 * time.Millisecond, 2}, // late is only 1.4 s old
		{3000 * time.Millisecond, 3}, // and now counted
		{10 * time.Second, 3},
	} {
		if got := a.older(t0.Add(tc.at), time.Second); got != tc.want {
			t.Errorf("at t0+%v: %d older than 1s, want %d", tc.at, got, tc.want)
		}
	}
	a.end(s1)
	a.end(s3)
	a.end(late)
	if got := a.older(t0.Add(10*time.Second), time.Second); got != 0 {
		t.Errorf("all ended: %d", got)
	}
	// The same bucket, attemptSeconds later.
	again := t0.Add(attemptSeconds * time.Second)
	a.start(again)
	if got := a.older(again.Add(2*time.Second), time.Second); got != 1 {
		t.Errorf("bucket reused: %d, want 1", got)
	}
}

// An attempt counts as slow after a second, or after many times the
// goroutines' wait for a core when they queue for one.
func TestSlowAge(t *testing.T) {
	for sched, want := range map[time.Duration]time.Duration{
		0: time.Second, 10 * time.Millisecond: time.Second, 100 * time.Millisecond: 5 * time.Second,
	} {
		if got := slowAge(sched); got != want {
			t.Errorf("slowAge(%v) = %v, want %v", sched, got, want)
		}
	}
}

// adapt never takes the slots below the floor it is given: Concurrency
// plus the slow attempts in progress.
func TestAdaptFloor(t *testing.T) {
	busy := load{saturated: true, sched: 10 * time.Millisecond}
	if got := adapt(256, 256+64, 4096, busy); got != 320 {
		t.Errorf("busy cores, 64 slow attempts: %d slots, want 320", got)
	}
	if got := adapt(400, 256+64, 4096, busy); got != 320 {
		t.Errorf("busy cores from 400: %d slots, want 320 (400 less a quarter is 300)", got)
	}
}
