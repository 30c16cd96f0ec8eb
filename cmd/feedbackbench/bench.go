package main

import (
	"net/http"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// bench starts what o asks for (env.go), runs the phases in order (warm-up,
// throughput rounds between ceiling rounds, latency, backlog: phases.go) and
// returns their figures; everything it started is stopped before it returns.
func bench(o options) (res result, err error) {
	e := &env{o: o, http: &http.Client{Timeout: 30 * time.Second}}
	defer e.close()
	res = result{Machine: machine(), Tenants: o.tenants, Events: o.events, ReceiverLatencyMS: float64(o.latency) / 1e6, Scenario: o.scenario(), Backlog: o.backlog,
		Outcomes: o.outcomes, TLS: o.tls, Hosts: o.hosts}
	// Before anything is started: the processes started inherit it.
	res.FileLimit = raiseFileLimit(filesNeeded(o), filesLeast(o))
	logf("open files: %s", res.FileLimit)
	res.Ports = localPorts(o)
	logf("ephemeral ports: %s", res.Ports)
	if err := e.startBroker(); err != nil {
		return res, err
	}
	if err := e.startRedis(); err != nil {
		return res, err
	}
	res.Redis = e.redisKind
	if err := e.startReceiver(); err != nil {
		return res, err
	}
	if e.daemon, err = e.startDaemon(o.outcomes == "on"); err != nil {
		return res, err
	}
	res.FileLimit.Receiver, res.FileLimit.Feedbackd = openFilesLimit(e.receiverPID), openFilesLimit(e.daemon.cmd.Process.Pid)
	if err := e.createTenants(); err != nil {
		return res, err
	}
	p, err := kgo.NewClient(append(slices.Clone(e.kopts), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))...)
	if err != nil {
		return res, err
	}
	e.producer = p
	e.cleanup = append(e.cleanup, p.Close)

	logf("ceilings: %d concurrent POSTs of %d bytes, rounds of %s", o.concurrency, len(payload()), o.duration)
	netHTTP := e.netHTTPClient()
	sender, err := e.senderClient()
	if err != nil {
		return res, err
	}
	// ceilings measures both: the raw ceiling, and feedbackd's sender alone.
	ceilings := func() ceilingPoint {
		c := ceilingPoint{raw: e.ceiling("net/http client", netHTTP), sender: e.ceiling("feedbackd's sender alone", sender)}
		res.CeilingPerSec = max(res.CeilingPerSec, c.raw)
		res.SenderCeilingPerSec = max(res.SenderCeilingPerSec, c.sender)
		return c
	}

	// Warm up first (connections to the receiver, the group's fetch
	// sessions, feedbackd's caches), so that the measured rounds do not pay
	// for them.
	warmUp := func() error {
		logf("warm-up: %d events, not measured", max(o.events/10, 1000))
		_, err := e.throughput(max(o.events/10, 1000), false, false)
		return err
	}
	if err := warmUp(); err != nil {
		return res, err
	}
	// The machine is shared and its speed drifts by tens of percent from
	// minute to minute, so a ceiling measured once is a poor yardstick for
	// a throughput measured later: each throughput round runs between two
	// ceiling rounds and is compared with their mean, the ceiling's
	// estimate for the time in between.
	before := ceilings()
	round1 := func(i, n int, withBad bool, what string) (round, phase, error) {
		ph, err := e.throughput(o.events, withBad, i == 0 && !withBad)
		if err != nil {
			return round{}, ph, err
		}
		after := ceilings()
		r := newRound(before, ph.rate, after)
		logf("round %d of %d%s%s: %.0f deliveries/s, raw ceiling %.0f/s before and %.0f/s after: ratio %.2f (%.2f of the sender alone)",
			i+1, n, what, map[bool]string{true: " with the " + o.scenario()}[withBad], r.DeliveriesPerSec, before.raw, after.raw, r.Ratio, r.SenderRatio)
		before = after
		return r, ph, nil
	}
	// With a slow or dead tenant, each healthy round (with outcomes on,
	// after --outcomes both) is followed by one in which that tenant is
	// bad and gets its share of the events, timed the same way; the other
	// tenants' ratio to the ceiling is compared with the healthy round's
	// just before, a pair the drift of the machine's speed changes least.
	// After a bad round the tenant answers at once, and the next round
	// starts once it has answered all its events: the healthy rounds do
	// not pay for its retries.
	bad := o.slowTenant || o.deadTenant
	var pairs []float64
	var badEvents int64 // produced for the bad tenant so far
	badRound := func(i int, healthy round) error {
		if err := e.setBad(true); err != nil {
			return err
		}
		r, ph, err := round1(i, o.rounds, true, "")
		if err != nil {
			return err
		}
		res.BadRounds = append(res.BadRounds, r)
		pairs = append(pairs, r.Ratio/healthy.Ratio)
		if err := e.setBad(false); err != nil {
			return err
		}
		badEvents += ph.badEvents
		return e.waitBadDrained(badEvents)
	}
	if o.outcomes == "both" {
		// Rounds alternate between feedbackd with outcomes off and on,
		// each after a restart and a warm-up, against the same ceilings.
		var runs [2]variantRun
		for i := range o.rounds {
			for v, on := range []bool{false, true} {
				if err := e.restartDaemon(on); err != nil {
					return res, err
				}
				if err := warmUp(); err != nil {
					return res, err
				}
				m0 := e.daemon.memstats(e.http)
				r, ph, err := round1(i, o.rounds, false, map[bool]string{false: " (outcomes off)", true: " (outcomes on)"}[on])
				if err != nil {
					return res, err
				}
				runs[v].add(r, ph, m0, e.daemon.memstats(e.http))
				if bad && on {
					if err := badRound(i, r); err != nil {
						return res, err
					}
				}
			}
		}
		res.figures = runs[0].figures()
		on := runs[1].figures()
		res.OutcomesOn = &on
		res.OnVsOff = compare(runs[0], runs[1])
	} else {
		var run variantRun
		for i := range o.rounds {
			m0 := e.daemon.memstats(e.http)
			r, ph, err := round1(i, o.rounds, false, "")
			if err != nil {
				return res, err
			}
			run.add(r, ph, m0, e.daemon.memstats(e.http))
			if bad {
				if err := badRound(i, r); err != nil {
					return res, err
				}
			}
		}
		res.figures = run.figures()
	}
	// What follows runs with the feedbackd running now: with outcomes on
	// after --outcomes both.
	rate := res.DeliveriesPerSec
	if res.OutcomesOn != nil {
		rate = res.OutcomesOn.DeliveriesPerSec
	}
	if bad {
		res.OthersPerSec = median(column(res.BadRounds, func(r round) float64 { return r.DeliveriesPerSec }))
		res.OthersVsHealthy, res.OthersWorstPair = median(pairs), slices.Min(pairs)
	}

	// Half the ceiling measured last, just before this phase, not the
	// best one: the machine's speed drifts, and half its best can be well
	// over half of what it does now.
	res.OfferedPerSec = before.raw / 2
	l, err := e.latency(res.OfferedPerSec)
	if err != nil {
		return res, err
	}
	res.P50MS, res.P95MS, res.P99MS, res.GCs = l.p50, l.p95, l.p99, l.gcs
	// Half the ceiling may be more than feedbackd sustains here, which
	// measures a growing queue: also measure at half feedbackd's own rate.
	res.SustainedPerSec = rate / 2
	if l, err = e.latency(res.SustainedPerSec); err != nil {
		return res, err
	}
	res.SustainedP50MS, res.SustainedP95MS, res.SustainedP99MS, res.SustainedGCs = l.p50, l.p95, l.p99, l.gcs
	res.PeakRSSMiB = e.daemon.peakRSS()
	res.MemoryAtPeak = e.memPeak
	if e.memPeak.MostInflight >= 1000 { // below, the process's own memory is most of it
		// Both over the throughput rounds' samples (with --outcomes both,
		// over every feedbackd started), not the last one's peak.
		res.PerInflightKB = e.memPeak.RSSMiB * (1 << 20) / e.memPeak.MostInflight / 1000
	}
	res.GOMEMLIMIT = e.gomemlimit()
	res.FeedbackdCPUCores = e.daemon.cpu() / time.Since(e.daemon.started).Seconds()

	if o.backlog > 0 {
		if err := e.drainBacklog(&res); err != nil {
			return res, err
		}
	}
	res.FeedbackdLog = e.daemonLog.summary()
	return res, nil
}

// variantRun is what the rounds of one feedbackd (outcomes on or off)
// measured.
type variantRun struct {
	rounds         []round
	total          phase
	mallocs, bytes float64
	dials, evicted float64 // feedbackd's delivery connections
}

func (v *variantRun) add(r round, ph phase, m0, m1 memstats) {
	v.rounds = append(v.rounds, r)
	v.total.add(ph)
	d := m1.minus(m0)
	v.mallocs += d.mallocs
	v.bytes += d.bytes
	v.dials += d.dials
	v.evicted += d.evicted
}

// figures are the run's medians and totals.
func (v *variantRun) figures() figures {
	rs, total := v.rounds, v.total
	ratios := column(rs, func(r round) float64 { return r.Ratio })
	f := figures{
		Rounds:               rs,
		DeliveriesPerSec:     median(column(rs, func(r round) float64 { return r.DeliveriesPerSec })),
		Ratio:                median(ratios),
		WorstRatio:           slices.Min(ratios),
		SenderRatio:          median(column(rs, func(r round) float64 { return r.SenderRatio })),
		CPUPer1000:           total.cpu / float64(total.deliveries) * 1000,
		OthersCPUPer1000:     map[string]float64{},
		DialsPer1000:         v.dials / float64(total.deliveries) * 1000,
		EvictedPer1000:       v.evicted / float64(total.deliveries) * 1000,
		AllocsPerDelivery:    v.mallocs / float64(total.deliveries),
		BytesPerDelivery:     v.bytes / float64(total.deliveries),
		TLSHandshakesPer1000: float64(total.handshakes) / float64(total.deliveries) * 1000,
		TLSResumedPer1000:    float64(total.resumed) / float64(total.deliveries) * 1000,
		Connections:          total.conns,
	}
	for name, c := range total.others {
		f.OthersCPUPer1000[name] = c / float64(total.deliveries) * 1000
	}
	if total.steady.deliveries > 0 {
		f.SteadyCPUPer1000 = total.steady.cpu / float64(total.steady.deliveries) * 1000
		f.SteadyShare = float64(total.steady.deliveries) / float64(total.deliveries)
	}
	return f
}

// compare is on against off, round by round: each on round with the off
// round just before it.
func compare(off, on variantRun) *onVsOff {
	pairs := make([]round, len(on.rounds))
	for i := range on.rounds {
		pairs[i] = round{Ratio: on.rounds[i].Ratio / off.rounds[i].Ratio}
	}
	ratios := column(pairs, func(r round) float64 { return r.Ratio })
	return &onVsOff{
		Throughput:      median(ratios),
		WorstThroughput: slices.Min(ratios),
		CPU:             (on.total.cpu / float64(on.total.deliveries)) / (off.total.cpu / float64(off.total.deliveries)),
	}
}

// round is one throughput round between two ceiling rounds; its ratios
// are to their means.
type round struct {
	CeilingBefore    float64 `json:"ceiling_before_per_s"`
	SenderBefore     float64 `json:"sender_before_per_s"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	CeilingAfter     float64 `json:"ceiling_after_per_s"`
	SenderAfter      float64 `json:"sender_after_per_s"`
	Ratio            float64 `json:"ratio"`
	SenderRatio      float64 `json:"ratio_to_sender"`
}

// ceilingPoint is one ceiling round of each client.
type ceilingPoint struct{ raw, sender float64 }

func newRound(before ceilingPoint, rate float64, after ceilingPoint) round {
	return round{
		CeilingBefore: before.raw, SenderBefore: before.sender, DeliveriesPerSec: rate, CeilingAfter: after.raw, SenderAfter: after.sender,
		Ratio: rate / ((before.raw + after.raw) / 2), SenderRatio: rate / ((before.sender + after.sender) / 2),
	}
}

// column is f of each round.
func column(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// median of xs, which is not empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
