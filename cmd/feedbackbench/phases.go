package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// waitFor polls the receiver until it counted want healthy deliveries.
func (e *env) waitFor(what string, want int64, d *daemonProc) (stats, error) {
	last, lastAt := int64(-1), time.Now()
	for {
		s, err := e.stats()
		if err != nil {
			return s, err
		}
		if s.Count >= want {
			return s, nil
		}
		if s.Count != last {
			last, lastAt = s.Count, time.Now()
		} else if time.Since(lastAt) > 2*time.Minute {
			return s, fmt.Errorf("%s: stuck at %d of %d deliveries for 2 minutes", what, s.Count, want)
		}
		select {
		case <-d.done:
			return s, fmt.Errorf("%s: feedbackd exited", what)
		case <-time.After(time.Second):
		}
		logf("%s: %d/%d delivered", what, s.Count, want)
	}
}

// waitBadDrained waits until the slow or dead tenant's endpoint, healthy
// again, has answered all the events it was given (want, counted since
// the start), so that its retries are not paid for by the round after:
// they come back from the retry tiers (5 s, 30 s, 2 min) and the
// breaker's cool-down. It gives up, saying so, after 5 minutes.
func (e *env) waitBadDrained(want int64) error {
	who := "the " + strings.Replace(e.o.scenario(), "-", " ", 1)
	start := time.Now()
	for lastLog := start; ; {
		s, err := e.stats()
		if err != nil {
			return err
		}
		if s.BadAnswered >= want {
			logf("%s: its %d events answered, %.0f s after the round", who, want, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > 5*time.Minute {
			logf("%s: WARNING: %d of its %d events not answered after 5 minutes: the next round pays for their retries", who, want-s.BadAnswered, want)
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			logf("%s: waiting for its retries: %d/%d events answered", who, s.BadAnswered, want)
		}
		select {
		case <-e.daemon.done:
			return fmt.Errorf("%s: feedbackd exited", who)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ceiling is the receiver's rate over --duration with --concurrency
// goroutines each posting in a loop with a client newClient makes for this
// round. The receiver's idle connections (feedbackd's) are closed before,
// the client's connections after: no phase's connections outlive it.
func (e *env) ceiling(what string, newClient func() ceilingClient) float64 {
	_ = e.drain()
	_ = e.reset()
	c := newClient()
	var count atomic.Int64
	deadline := time.Now().Add(e.o.duration)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range e.o.concurrency {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				if c.post(g, n) {
					count.Add(1)
				}
			}
		})
	}
	wg.Wait()
	rate := float64(count.Load()) / time.Since(start).Seconds()
	c.close()
	tlsNote := ""
	if s, err := e.stats(); err == nil && e.tls != nil {
		tlsNote = fmt.Sprintf(", %d TLS handshakes (%d resumed)", s.Handshakes, s.Resumed)
	}
	_ = e.drain()
	_ = e.reset()
	logf("ceiling, %s: %.0f/s%s", what, rate, tlsNote)
	return rate
}

// phase is what one throughput run measured.
type phase struct {
	rate       float64            // deliveries/s, first to last arrival
	deliveries int64              // counted by the receiver
	cpu        float64            // feedbackd's CPU seconds
	others     map[string]float64 // CPU seconds of what shares the machine
	handshakes int64              // TLS handshakes at the receiver
	resumed    int64              // of them, resumed sessions
	conns      int                // connections open at the receiver at the last delivery
	badEvents  int64              // events produced for the slow or dead tenant
	steady     steady             // feedbackd's CPU with every slot in use, no dial
}

// steady is feedbackd's CPU seconds over a round's deliveries made with
// every slot in use and no dial (see steadyWindow).
type steady struct {
	cpu        float64
	deliveries int64
}

func (p *phase) add(q phase) {
	p.deliveries += q.deliveries
	p.cpu += q.cpu
	p.handshakes += q.handshakes
	p.resumed += q.resumed
	p.conns = max(p.conns, q.conns)
	p.steady.cpu += q.steady.cpu
	p.steady.deliveries += q.steady.deliveries
	if p.others == nil {
		p.others = map[string]float64{}
	}
	for name, c := range q.others {
		p.others[name] += c
	}
}

// throughput produces n events and measures the healthy tenants' delivery
// rate, first to last arrival, and the CPU feedbackd and the others used.
// With withBad, tenant 0 (slow or dead) gets its share of events. With
// profile, a CPU profile of feedbackd is taken meanwhile (--pprof). It
// starts with the receiver's idle connections closed: feedbackd connects
// again (with --tls, a handshake per connection, or a resumed session).
func (e *env) throughput(n int, withBad, profile bool) (phase, error) {
	if err := e.drain(); err != nil {
		return phase{}, err
	}
	if err := e.reset(); err != nil {
		return phase{}, err
	}
	pick := e.o.healthyTenant
	if withBad {
		pick = func(i int) int { return i % e.o.tenants }
	}
	want := int64(n)
	if withBad {
		want = 0
		for i := range n {
			if pick(i) != 0 {
				want++
			}
		}
	}
	what := "throughput"
	if withBad {
		what = "throughput with a " + strings.TrimSuffix(e.o.scenario(), "-tenant") + " tenant"
	}
	logf("%s: producing %d events over %d tenants", what, n, e.o.tenants)
	cpu0 := e.daemon.cpu()
	others0 := e.othersCPU()
	// One sampler a second, the memory's and the steady window's: a
	// scrape of /metrics costs feedbackd CPU.
	w := steadyWindow{slots: int64(e.o.concurrency), want: want}
	var mem memPeak
	inUse, stopSampling, sampled := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go e.sample(&mem, &w, inUse, stopSampling, sampled)
	stopSample := sync.OnceFunc(func() { close(stopSampling); <-sampled; e.memPeak.merge(mem) })
	defer stopSample()
	// The profile is of the round with every slot in use: with thousands
	// of slots, its first seconds are mostly dialling.
	profiled := make(chan error, 1)
	if e.daemon.pprof != "" && profile {
		go func() {
			select {
			case <-inUse:
				profiled <- e.profile(e.o.pprof, 5*time.Second)
			case <-stopSampling:
				profiled <- fmt.Errorf("no second of the round, from its %d-th delivery to its last %d, had every slot in use and no dial: not profiled", e.o.concurrency, e.o.concurrency)
			}
		}()
	} else {
		profiled <- nil
	}
	if err := e.produce(0, n, pick); err != nil {
		return phase{}, err
	}
	s, err := e.waitFor(what, want, e.daemon)
	stopSample()
	if perr := <-profiled; perr != nil {
		logf("pprof: %v", perr)
	}
	if err != nil {
		return phase{}, err
	}
	ph := phase{
		rate:       float64(s.Count-1) / (float64(s.Last-s.First) / 1e9),
		deliveries: s.Count,
		cpu:        e.daemon.cpu() - cpu0,
		others:     map[string]float64{},
		handshakes: s.Handshakes,
		resumed:    s.Resumed,
		conns:      s.Open,
		badEvents:  int64(n) - want,
		steady:     w.steady,
	}
	for name, c := range e.othersCPU() {
		ph.others[name] = c - others0[name]
	}
	if e.tls != nil {
		logf("%s: %.0f deliveries/s, %d connections open, %d TLS handshakes (%d resumed)", what, ph.rate, ph.conns, ph.handshakes, ph.resumed)
	} else {
		logf("%s: %.0f deliveries/s, %d connections open", what, ph.rate, ph.conns)
	}
	return ph, nil
}

// steadyWindow sums feedbackd's CPU over the intervals between samples
// of a round of want deliveries in which every slot is in use and no
// connection is opened: from the slots-th delivery (the first attempt in
// each slot dials: a round starts without connections) to the last with
// slots yet to make (then the slots empty), between two samples read
// whole and with feedbackd_delivery_dials_total the same in both (slots
// that grow, connections closed by the endpoint or evicted all dial, and
// with TLS each dial is a handshake).
type steadyWindow struct {
	slots, want int64
	steady           // what the intervals counted so far hold
	started     bool // an interval was counted
	prev        struct {
		count      int64 // 0: no sample to count an interval from
		cpu, dials float64
	}
}

// add takes a sample: count deliveries made, feedbackd's CPU seconds and
// dials so far; ok is false if any of them could not be read. It reports
// whether the sample ended the first interval counted.
func (w *steadyWindow) add(count int64, cpu, dials float64, ok bool) (first bool) {
	if !ok || count < w.slots || count > w.want-w.slots {
		w.prev.count = 0
		return false
	}
	if w.prev.count > 0 && dials == w.prev.dials {
		w.cpu += cpu - w.prev.cpu
		w.deliveries += count - w.prev.count
		first, w.started = !w.started, true
	}
	w.prev.count, w.prev.cpu, w.prev.dials = count, cpu, dials
	return first
}

// sample samples feedbackd every second until stop is closed, then closes
// done: its memory into peak, and its CPU, dials and deliveries into w,
// closing inUse when w counts its first interval.
func (e *env) sample(peak *memPeak, w *steadyWindow, inUse, stop, done chan struct{}) {
	defer close(done)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Second): // a scrape of /metrics costs feedbackd CPU: not more often
		}
		cpu := e.daemon.cpu()
		m := e.daemon.memstats(c)
		if m.goroutines > 0 {
			peak.add(m, e.daemon.rss())
		}
		s, err := e.stats()
		if w.add(s.Count, cpu, m.dials, err == nil && m.goroutines > 0 && m.dialsKnown) {
			close(inUse)
		}
	}
}

// latencyFigures is what a latency phase measured: the p50, p95 and p99
// from produce to arrival, in milliseconds, and the garbage collections
// feedbackd ran while the measured events were offered and delivered
// (from go_gc_duration_seconds' count; -1 if it could not be read): with
// thousands of slow deliveries in flight a collection's mark is the tail.
type latencyFigures struct {
	p50, p95, p99 float64
	gcs           float64
}

// latency offers rate events/s for --duration and measures them.
func (e *env) latency(rate float64) (l latencyFigures, err error) {
	// A second at the rate first, not counted: the ceiling round before
	// closed feedbackd's idle connections (as every phase does, so that
	// file descriptors do not pile up), and with thousands of slots the
	// first events of the phase would measure re-opening them.
	if err := e.reset(); err != nil {
		return l, err
	}
	logf("latency: offering %.0f events/s for 1s, not measured (connections open again)", rate)
	warm, err := e.offer(rate, time.Second)
	if err != nil {
		return l, err
	}
	if _, err := e.waitFor("latency warm-up", int64(warm), e.daemon); err != nil {
		return l, err
	}
	if err := e.reset(); err != nil {
		return l, err
	}
	logf("latency: offering %.0f events/s for %s", rate, e.o.duration)
	m0 := e.daemon.memstats(e.http)
	sent, err := e.offer(rate, e.o.duration)
	if err != nil {
		return l, err
	}
	s, err := e.waitFor("latency", int64(sent), e.daemon)
	if err != nil {
		return l, err
	}
	l = latencyFigures{p50: float64(s.P50) / 1e6, p95: float64(s.P95) / 1e6, p99: float64(s.P99) / 1e6, gcs: -1}
	if m := e.daemon.memstats(e.http); m0.gcsKnown && m.gcsKnown {
		l.gcs = m.gcs - m0.gcs
	}
	logf("latency: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms over %d deliveries%s", l.p50, l.p95, l.p99, s.Sample, collections(l.gcs))
	return l, nil
}

// offer produces rate events/s to the healthy tenants for d, each stamped
// with its produce time, and returns how many it produced.
func (e *env) offer(rate float64, d time.Duration) (int, error) {
	ctx := context.Background()
	const tick = 10 * time.Millisecond
	perTick := rate * tick.Seconds()
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	sent, owed := 0, 0.0
	for time.Since(start) < d {
		<-t.C
		owed += perTick
		for ; owed >= 1; owed-- {
			ch := topicOf(sent, e.o.hosts)
			e.producer.Produce(ctx, &kgo.Record{Topic: channels[ch].topic, Value: eventFor(sent, ch, time.Now().UnixNano(), e.o.healthyTenant(sent))}, nil)
			sent++
		}
	}
	return sent, e.flush()
}

// drainBacklog stops feedbackd, produces the backlog, starts a fresh
// feedbackd and measures its rate and peak RSS while it drains.
func (e *env) drainBacklog(res *result) error {
	logf("backlog: stopping feedbackd, producing %d events", e.o.backlog)
	e.daemon.stop()
	if err := e.reset(); err != nil {
		return err
	}
	for from := 0; from < e.o.backlog; from += 100_000 {
		to := min(from+100_000, e.o.backlog)
		if err := e.produce(from, to, e.o.healthyTenant); err != nil {
			return err
		}
		logf("backlog: %d/%d produced", to, e.o.backlog)
	}
	d, err := e.startDaemon(e.daemon.outcomes)
	if err != nil {
		return err
	}
	e.daemon = d
	var peak float64
	stop := make(chan struct{})
	go func() { // VmHWM is the peak already; sample in case the process exits
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				peak = max(peak, d.peakRSS())
			}
		}
	}()
	s, err := e.waitFor("backlog", int64(e.o.backlog), d)
	close(stop)
	if err != nil {
		return err
	}
	res.BacklogPerSec = float64(s.Count-1) / (float64(s.Last-s.First) / 1e9)
	res.BacklogPeakRSSMiB = max(peak, d.peakRSS())
	logf("backlog: %.0f deliveries/s, peak RSS %.0f MiB", res.BacklogPerSec, res.BacklogPeakRSSMiB)
	return nil
}
