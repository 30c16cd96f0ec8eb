package pipeline

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Against slow endpoints, throughput is slots / latency: 256 slots and
// endpoints answering in 200 ms make 1,280 deliveries/s however many cores
// there are. Against fast ones, slots beyond what the cores can serve only
// cost: 2,048 instead of 256 took 1.5 times the CPU per delivery in a bench
// against an endpoint answering at once. So the slots grow, from
// Concurrency up to MaxInflight, while every slot is taken and the
// process's goroutines get a core as soon as they can run (the deliveries
// wait for endpoints, not for CPU); and they shrink back when goroutines
// queue for a core or the slots are not all needed.

// A slow endpoint's attempts hold delivery slots for seconds without
// using a core: an endpoint answering in 10 s held 64 of the 256 slots (its
// endpoint_concurrency) in a bench against a fast receiver, where the
// slots do not grow (the goroutines queue for a core), and the other
// tenants got 0.87 of their rate. So the slots never go below Concurrency
// plus the attempts in progress for longer than slowAge (slowAttempts).
// On a starved machine any attempt can take long because it waits for a
// core; the age grows with the goroutines' wait (slowSchedFactor times its
// p90), so that waiting for CPU does not read as waiting for an endpoint
// and the floor does not push the slots up while the cores are the limit.
const (
	slowAttempt     = time.Second
	slowSchedFactor = 50
)

// slowAge is the age past which an attempt in progress counts as waiting
// for a slow endpoint, given the goroutines' p90 wait for a core.
func slowAge(sched time.Duration) time.Duration {
	return max(slowAttempt, slowSchedFactor*sched)
}

// slowAttempts counts the attempts in progress by the second they started
// in, so that adapt can tell how many delivery slots wait on slow
// endpoints. Each counter is cumulative: a bucket's started less ended is
// the attempts of its latest second still in progress, since an attempt
// lasts less than attemptSeconds (delivery.timeout is at most 5 minutes).
// It is safe for concurrent use.
type slowAttempts struct {
	started, ended [attemptSeconds]atomic.Int64
}

const attemptSeconds = 512

// start counts an attempt starting now and returns what end takes.
func (a *slowAttempts) start(now time.Time) int64 {
	sec := now.Unix()
	a.started[sec%attemptSeconds].Add(1)
	return sec
}

// end counts the end of the attempt that start returned sec for.
func (a *slowAttempts) end(sec int64) { a.ended[sec%attemptSeconds].Add(1) }

// older is how many attempts in progress at now started at least age ago
// (to the second, erring towards fewer).
func (a *slowAttempts) older(now time.Time, age time.Duration) int {
	n := int64(0)
	last := now.Unix() - int64(age/time.Second) - 1 // started in that second or before: age ago at least
	for sec := now.Unix() - attemptSeconds + 1; sec <= last; sec++ {
		n += a.started[sec%attemptSeconds].Load() - a.ended[sec%attemptSeconds].Load()
	}
	return int(max(n, 0))
}

// load is what adapt decides on, sampled over adaptInterval.
type load struct {
	saturated bool          // a poll found every slot taken
	sched     time.Duration // 90th percentile of goroutines' wait for a core
	// depFailing: the last Redis check was slow or failed. Slots full of
	// jobs waiting for Redis (claims, config reads) look like slots
	// waiting for endpoints; more of them would only load it more.
	depFailing bool
}

const (
	adaptInterval = time.Second
	// Below idleSched goroutines have cores to spare; above busySched they
	// queue for one. Measured on 2 cores with every slot taken: against
	// endpoints answering in 200 ms, 0.4 to 0.8 ms at p90 (p99 jumps to
	// tens of ms for a moment whenever many jobs start at once: too noisy
	// to decide on); against an endpoint answering at once, 6 to 15 ms.
	idleSched = time.Millisecond
	busySched = 4 * time.Millisecond
)

// adapt is the next limit of the delivery slots, within [least, most]:
// doubled while all are taken and cores are to spare (and Redis answers),
// down by a quarter when goroutines queue for a core, and down by a
// sixteenth per interval while they are not all taken.
func adapt(limit, least, most int, l load) int {
	next := limit
	switch {
	case l.sched >= busySched:
		next = limit - limit/4
	case l.saturated && l.sched < idleSched && !l.depFailing:
		next = 2 * limit
	case !l.saturated:
		next = limit - limit/16
	}
	return min(max(next, least), most)
}

// adaptLoop resizes the slots every adaptInterval until ctx ends, if they
// may grow (MaxInflight above Concurrency).
func (p *Pipeline) adaptLoop(ctx context.Context) {
	least, most := p.opts.Concurrency, p.opts.MaxInflight
	p.metrics.slots.Set(float64(least))
	if most <= least {
		return
	}
	sched := newSchedLatency()
	t := time.NewTicker(adaptInterval)
	defer t.Stop()
	target := least // what the slots are resized to; the limit follows as jobs end
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := load{saturated: p.slots.saturated(), sched: sched.p90(), depFailing: p.depFailing.Load()}
		floor := min(least+p.attempts.older(time.Now(), slowAge(l.sched)), most)
		if next := adapt(target, floor, most, l); next != target {
			p.log.Debug("delivery slots resized", "from", target, "to", next, "all_taken", l.saturated, "sched_p90", l.sched, "dependency_failing", l.depFailing, "slow_attempts", floor-least)
			target = next
			p.slots.resize(target)
		}
		p.metrics.slots.Set(float64(p.slots.limit()))
	}
}

// schedLatency reads the runtime's histogram of the time goroutines wait
// to run once runnable (/sched/latencies:seconds, kept as they run).
type schedLatency struct {
	sample []metrics.Sample
	last   []uint64
}

func newSchedLatency() *schedLatency {
	s := &schedLatency{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	s.p90()
	return s
}

// p90 is the 90th percentile of the waits since the last call (0 if none).
func (s *schedLatency) p90() time.Duration {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	if len(s.last) != len(h.Counts) {
		s.last = make([]uint64, len(h.Counts))
	}
	q := quantile(h.Counts, s.last, h.Buckets, 0.9)
	copy(s.last, h.Counts) // Read reuses h.Counts
	return q
}

// quantile is the q quantile of what a cumulative histogram counted
// between last and counts: the upper bound of the bucket it falls in
// (buckets has len(counts)+1 bounds; an unbounded last one counts as an
// hour). 0 if nothing was counted.
func quantile(counts, last []uint64, buckets []float64, q float64) time.Duration {
	var total uint64
	for i, c := range counts {
		total += c - last[i]
	}
	if total == 0 {
		return 0
	}
	var seen uint64
	for i, c := range counts {
		seen += c - last[i]
		if float64(seen) >= q*float64(total) {
			return time.Duration(min(buckets[i+1], 3600) * float64(time.Second))
		}
	}
	return time.Hour
}
