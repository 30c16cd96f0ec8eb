package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// slots bounds the jobs running: n delivery slots, and n settling slots
// that a job trades its delivery slot for once its attempt is over (see
// slot.trade), where n, the limit, moves between the least and the most
// asked for (see resize). It counts the running jobs so that a drain can
// wait for them. It is safe for concurrent use.
//
// The channels hold a token per slot taken, and are as large as the most
// slots: slots above the limit are held by the slots themselves as
// ballast, tokens no job can take.
type slots struct {
	delivery chan struct{} // one token per job with a delivery slot, and the ballast
	settling chan struct{} // one token per job with a settling slot, and the ballast
	freed    chan struct{} // signalled when a delivery slot is given back
	inflight prometheus.Gauge
	// ballast is the tokens held as ballast in each channel; want is how
	// many each should hold (see resize).
	ballast, ballastSettling atomic.Int64
	want                     atomic.Int64
	// full is set when a poll finds every delivery slot taken.
	full atomic.Bool
	// settlingNow is the settling slots taken, which maxSettling bounds
	// too.
	settlingNow atomic.Int64

	mu       sync.Mutex // orders running.Add before the drain's Wait
	draining bool
	drain    chan struct{} // closed as the drain starts
	running  sync.WaitGroup
}

// newSlots returns n slots, which resize may take up to most.
func newSlots(n, most int, inflight prometheus.Gauge) *slots {
	most = max(n, most)
	s := &slots{
		delivery: make(chan struct{}, most),
		settling: make(chan struct{}, most),
		freed:    make(chan struct{}, 1),
		inflight: inflight,
		drain:    make(chan struct{}),
	}
	want := int64(most - max(n, 1))
	s.want.Store(want)
	takeBallast(s.delivery, &s.ballast, want) // the channels are empty: all of it
	takeBallast(s.settling, &s.ballastSettling, want)
	return s
}

// limit is the delivery slots jobs may take now: more than the last
// resize asked for while a shrink waits for jobs to give slots up.
func (s *slots) limit() int { return cap(s.delivery) - int(s.ballast.Load()) }

// resize makes the limit n (within the most slots). Growing gives ballast
// back at once. Shrinking never takes a slot that is free now, which a
// poll may have counted on: the slots jobs give up become ballast (see
// keep) until there is enough, so the limit comes down as fast as jobs
// end. One goroutine at a time may call it.
func (s *slots) resize(n int) {
	want := int64(cap(s.delivery) - min(max(n, 1), cap(s.delivery)))
	s.want.Store(want)
	giveBallast(s.delivery, &s.ballast, want)
	giveBallast(s.settling, &s.ballastSettling, want)
	takeBallast(s.settling, &s.ballastSettling, want) // no poll counts free settling slots
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// giveBallast takes the ballast held in ch above want out of it.
func giveBallast(ch chan struct{}, held *atomic.Int64, want int64) {
	for held.Load() > want {
		<-ch
		held.Add(-1)
	}
}

// takeBallast takes the free tokens of ch as ballast, up to want.
func takeBallast(ch chan struct{}, held *atomic.Int64, want int64) {
	for held.Load() < want {
		select {
		case ch <- struct{}{}:
			held.Add(1)
		default:
			return
		}
	}
}

// keep reports whether a slot given back stays taken, as ballast, because
// the slots are shrinking (its token stays in the channel).
func (s *slots) keep(held *atomic.Int64) bool {
	for {
		b := held.Load()
		if b >= s.want.Load() {
			return false
		}
		if held.CompareAndSwap(b, b+1) {
			return true
		}
	}
}

// saturated reports whether a poll found every delivery slot taken since
// the last call.
func (s *slots) saturated() bool { return s.full.Swap(false) }

// acquire waits for a delivery slot and counts the job as running. It
// returns nil, taking nothing, if ctx ends first or the drain started.
func (s *slots) acquire(ctx context.Context) *slot {
	if ctx.Err() != nil {
		return nil
	}
	select {
	case s.delivery <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		s.giveBack()
		return nil
	}
	s.running.Add(1)
	s.inflight.Inc()
	return &slot{pool: s, delivery: true}
}

// startDrain stops acquire from counting more jobs and returns a channel
// closed once the running ones are done.
func (s *slots) startDrain() <-chan struct{} {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		close(s.drain)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	return done
}

// isDraining reports whether the drain started.
func (s *slots) isDraining() bool {
	select {
	case <-s.drain:
		return true
	default:
		return false
	}
}

// free is how many more jobs may start now (at least 1).
func (s *slots) free() int { return max(cap(s.delivery)-len(s.delivery), 1) }

// pollBatch is how many free slots a poll waits for, up to pollGather,
// once at least one is free: when every slot is busy, polling as soon as
// one frees up made a poll per record, which cost more than the record.
const (
	pollBatch  = 16
	pollGather = time.Millisecond
)

// wait blocks while every delivery slot is taken, then gives others up to
// pollGather to free up, until pollBatch are (timer is the one it uses to
// wait). It reports false once ctx has ended.
func (s *slots) wait(ctx context.Context, timer *time.Timer) bool {
	for len(s.delivery) == cap(s.delivery) {
		s.full.Store(true)
		select {
		case <-s.freed:
		case <-ctx.Done():
			return false
		}
	}
	want := min(pollBatch, s.limit())
	if s.free() >= want {
		return ctx.Err() == nil
	}
	timer.Reset(pollGather)
	defer timer.Stop()
	for s.free() < want {
		select {
		case <-s.freed:
		case <-timer.C:
			return ctx.Err() == nil
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

func (s *slots) giveBack() {
	if s.keep(&s.ballast) {
		return
	}
	<-s.delivery
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// slot is one running job's share of the slots: its delivery slot, which it
// gives up while it is parked and trades for a settling slot after its
// attempt. It is used by one goroutine at a time: the job's, then the one
// that waited for the attempt's answer (see Sender).
type slot struct {
	pool     *slots
	delivery bool
	settling bool
}

// maxSettling bounds the settling slots, whatever the limit: settling
// waits on Redis and Kafka, and jobs pile up there only when the machine
// cannot keep up. At 16,384 delivery slots on a starved machine, up to as
// many settling jobs held their record, event and goroutine, 35,000
// goroutines in all; a job that finds none free settles in its delivery
// slot, which holds back the next poll instead.
const maxSettling = 1024

// trade trades the delivery slot for a settling slot, if one is free, once
// the attempt is over: recording the delivery and writing a retry or dead
// letter wait on Redis and Kafka, not on the endpoint, and should not keep
// the next delivery waiting. When no settling slot is free the job keeps
// its delivery slot.
func (s *slot) trade() {
	if !s.delivery || s.settling {
		return
	}
	if s.pool.settlingNow.Add(1) > maxSettling {
		s.pool.settlingNow.Add(-1)
		return
	}
	select {
	case s.pool.settling <- struct{}{}:
		s.settling = true
		s.release()
	default:
		s.pool.settlingNow.Add(-1)
	}
}

// release gives up the delivery slot (the job parks, or settles).
func (s *slot) release() {
	if s.delivery {
		s.delivery = false
		s.pool.inflight.Dec()
		s.pool.giveBack()
	}
}

// take takes a delivery slot if one is free, without waiting. A job handed
// its endpoint's place after parking goes on without one if none is free:
// the slots may all be taken by jobs waiting for the place it has, and
// waiting for one of theirs would deadlock. Such jobs are bounded by
// MaxParked.
func (s *slot) take() {
	select {
	case s.pool.delivery <- struct{}{}:
		s.delivery = true
		s.pool.inflight.Inc()
	default:
	}
}

// done gives up the job's slots. The job is still counted as running,
// until end.
func (s *slot) done() {
	s.release()
	if s.settling {
		s.settling = false
		s.pool.settlingNow.Add(-1)
		if !s.pool.keep(&s.pool.ballastSettling) {
			<-s.pool.settling
		}
	}
}

// end ends the job's count as running: its offset is marked (settled or
// abandoned). It may be called from another goroutine than the job's, and
// before done.
func (s *slot) end() { s.pool.running.Done() }

// goroutines runs each function on a goroutine of its own, reusing an idle
// one that finished an earlier function when there is one. A job's
// goroutine grows its stack (parsing, routing, signing, writing the
// request, and settling the job when its answer came within the sender's
// brief wait, as a nearby endpoint's does); a new goroutine per record
// would grow and copy it again every time. A slow answer is waited for
// elsewhere (see Sender): the goroutine is free again after the brief
// wait. At most maxIdle goroutines wait
// for the next function (until close); the others end: with thousands of
// slow deliveries in flight, keeping every goroutine that ever ran kept
// twice Concurrency of them, 12,000 idle ones in a bench at 8,192 slots.
type goroutines struct {
	next    chan func() // unbuffered: a send succeeds only if one is idle
	stop    chan struct{}
	idle    atomic.Int64 // goroutines waiting in loop, or about to
	maxIdle int64
}

// maxIdleGoroutines is goroutines' maxIdle: more than the jobs that start
// in the time a job takes at the rates measured (about 20,000 jobs/s of
// about 10 ms each against a fast receiver: 200).
const maxIdleGoroutines = 1024

func newGoroutines() *goroutines {
	return &goroutines{next: make(chan func()), stop: make(chan struct{}), maxIdle: maxIdleGoroutines}
}

func (g *goroutines) goFunc(f func()) {
	select {
	case g.next <- f:
	default:
		go g.loop(f)
	}
}

func (g *goroutines) loop(f func()) {
	for {
		f()
		if g.idle.Add(1) > g.maxIdle {
			g.idle.Add(-1)
			return
		}
		select {
		case f = <-g.next:
			g.idle.Add(-1)
		case <-g.stop:
			return
		}
	}
}

// close ends the idle goroutines; functions running finish first.
func (g *goroutines) close() { close(g.stop) }
