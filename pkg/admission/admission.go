// Package admission decides, per endpoint, whether a delivery attempt may
// go now, so that a slow or dead endpoint costs the others almost nothing:
//
//   - an in-flight limit per endpoint, shared by the instances: each takes
//     its share of the limit (the limit divided by the live instances,
//     which heartbeat in Redis, rounded up);
//   - a circuit breaker per endpoint, shared through Redis: after
//     Threshold failures with no success in between it opens for a
//     cooldown, during which no attempt is made; then one attempt over all
//     instances is the probe (half-open): a success closes the breaker, a
//     failure reopens it for twice as long, up to MaxCooldown.
//
// Healthy endpoints cost no Redis round trip: only failures, probes, the
// first success after a failure and a refresh every Refresh do. If Redis is
// down, breakers fail open (attempts go ahead) and limits use the last
// known instance count.
package admission

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Options configure a Controller.
type Options struct {
	KeyPrefix    string        // Redis key prefix, e.g. "feedbackd:"
	Limit        int           // attempts in flight per endpoint, all instances together; default 64
	Threshold    int           // failures that open a breaker; default 5
	BaseCooldown time.Duration // first open period; default 10s
	MaxCooldown  time.Duration // longest open period; default 5m
	Refresh      time.Duration // how often instances and breakers are read; default 1s
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Limit <= 0 {
		o.Limit = 64
	}
	if o.Threshold <= 0 {
		o.Threshold = 5
	}
	if o.BaseCooldown <= 0 {
		o.BaseCooldown = 10 * time.Second
	}
	if o.MaxCooldown <= 0 {
		o.MaxCooldown = 5 * time.Minute
	}
	o.MaxCooldown = max(o.MaxCooldown, o.BaseCooldown)
	if o.Refresh <= 0 {
		o.Refresh = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

// Controller is the admission control of one instance. It is safe for
// concurrent use. Run keeps its view of the other instances fresh; without
// it the controller acts alone, except for the breakers it opens itself.
type Controller struct {
	opts     Options
	rdb      redis.UniversalClient
	instance string
	metrics  *metrics

	mu        sync.Mutex
	inflight  map[string]*endpoint // endpoints with attempts in flight here
	open      map[string]openState // breakers open or half-open, from Redis
	suspect   map[string]bool      // endpoints that failed here since their last success
	instances int                  // live instances, at least 1
	// For Slow: the latency of attempts per endpoint, smoothed, kept for a
	// minute after the last one, and its sum; attempts in flight here;
	// when one last ended, or the first began since none were.
	latency    map[string]*latency
	latencySum time.Duration
	running    int
	ended      time.Time
}

type endpoint struct {
	n       int
	waiters []*waiter // handed places in order
	ended   time.Time // when an attempt last ended, or the first in flight began
}

type latency struct {
	avg  time.Duration
	seen time.Time
}

type openState struct {
	until    time.Time
	cooldown time.Duration
}

// New returns a Controller that keeps its shared state in rdb.
func New(rdb redis.UniversalClient, opts Options) *Controller {
	opts.defaults()
	return &Controller{
		opts: opts, rdb: rdb, instance: rand.Text(), metrics: newMetrics(opts.Registerer),
		inflight: map[string]*endpoint{}, open: map[string]openState{}, suspect: map[string]bool{}, instances: 1,
		latency: map[string]*latency{},
	}
}

// Keys. An endpoint's breaker state, failure counter and probe lock carry
// the endpoint as their Redis Cluster hash tag, so that one script can
// change all three; the breakers hash only indexes the open breakers for
// the refresh of every instance (one HGETALL), and is written after the
// script: if an instance dies in between, the index is repaired by the
// next failure or probe of that endpoint.
func (c *Controller) breakersKey() string       { return c.opts.KeyPrefix + "breakers" }
func (c *Controller) stateKey(ep string) string { return c.opts.KeyPrefix + "breaker:{" + ep + "}" }
func (c *Controller) failsKey(ep string) string {
	return c.opts.KeyPrefix + "breaker-fails:{" + ep + "}"
}
func (c *Controller) probeKey(ep string) string {
	return c.opts.KeyPrefix + "breaker-probe:{" + ep + "}"
}
func (c *Controller) instancesKey() string { return c.opts.KeyPrefix + "instances" }

// index copies an endpoint's breaker state to the breakers hash ("" drops
// it). Errors are only logged: the index is a hint, the state key decides.
func (c *Controller) index(ctx context.Context, ep, v string) {
	var err error
	if v == "" {
		err = c.rdb.HDel(ctx, c.breakersKey(), ep).Err()
	} else {
		err = c.rdb.HSet(ctx, c.breakersKey(), ep, v).Err()
	}
	if err != nil {
		c.opts.Logger.Debug("circuit breaker index not updated in Redis", "endpoint", ep, "err", err)
	}
}

// share is this instance's part of the per-endpoint limit. Called with
// c.mu held.
func (c *Controller) share() int { return max(1, (c.opts.Limit+c.instances-1)/c.instances) }

// Answer of Admit.
type Answer int

const (
	Go    Answer = iota // attempt now, then call Release
	Busy                // this instance has the endpoint's share in flight (or callers wait for it): Wait, or come back later
	Open                // the endpoint's breaker is open: no attempt before Until
	Probe               // half-open: this attempt is the probe; call Release after
)

// Decision is the answer of Admit.
type Decision struct {
	Answer  Answer
	Until   time.Time // Open: when the endpoint may be tried again
	Release func()    // Go and Probe: frees the in-flight place; idempotent
}

// Admit decides whether an attempt to endpoint ep may go now. It never
// waits, and never takes a place before a caller of Wait; after Busy, Wait
// waits for one.
func (c *Controller) Admit(ctx context.Context, ep string) Decision {
	now := time.Now()
	c.mu.Lock()
	st, isOpen := c.open[ep]
	c.mu.Unlock()
	if isOpen && now.Before(st.until) {
		return Decision{Answer: Open, Until: st.until}
	}
	release, ok := c.take(ep)
	if !ok {
		return Decision{Answer: Busy}
	}
	if !isOpen {
		return Decision{Answer: Go, Release: release}
	}
	// Half-open, as far as this instance knows: one attempt over all
	// instances is the probe. If Redis cannot say, the attempt goes ahead
	// (fail open).
	res, err := probeScript.Run(ctx, c.rdb, []string{c.stateKey(ep), c.probeKey(ep)}, c.instance,
		now.UnixMilli(), (st.cooldown + 30*time.Second).Milliseconds()).Text()
	switch {
	case err != nil || res == "probe":
		c.mu.Lock()
		c.suspect[ep] = true // the probe's outcome must reach Redis
		c.mu.Unlock()
		return Decision{Answer: Probe, Release: release}
	case res == "closed": // by another instance's probe
		c.mu.Lock()
		delete(c.open, ep)
		c.mu.Unlock()
		c.index(ctx, ep, "") // in case the closer died before it could
		return Decision{Answer: Go, Release: release}
	}
	release()
	if st, ok := parseOpen(res); ok { // reopened meanwhile
		c.mu.Lock()
		c.open[ep] = st
		c.mu.Unlock()
		return Decision{Answer: Open, Until: st.until}
	}
	// Another instance's probe is under way: look again shortly.
	return Decision{Answer: Open, Until: now.Add(min(st.cooldown, 5*time.Second))}
}

// probeScript elects the probe of a half-open breaker. It returns "closed"
// if the breaker is closed, "until:cooldown" if it is open, "probe" if the
// caller is the probe and "taken" if another caller is.
//
// KEYS: breaker state, probe lock (one hash slot). ARGV: instance, now,
// lock TTL in milliseconds.
//
// The probe lock is not a pkg/lease: it is taken here, in one round trip
// with the state check, under the instance's id rather than a token of
// the attempt's, and it is never released by its holder: Success and
// failScript clear it together with the breaker state, whoever holds it.
var probeScript = redis.NewScript(`
local cur = redis.call("GET", KEYS[1])
if not cur then return "closed" end
local untilms = tonumber(string.match(cur, "^(%d+):"))
if untilms and untilms > tonumber(ARGV[2]) then return cur end
if redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[3]) then return "probe" end
return "taken"`)

// waiter is a caller of Wait; ch is closed once it is handed a place,
// which it holds from start.
type waiter struct {
	ch    chan struct{}
	start time.Time
}

// entry is ep's in-flight state, created if need be. Called with c.mu held.
func (c *Controller) entry(ep string) *endpoint {
	e := c.inflight[ep]
	if e == nil {
		e = &endpoint{ended: time.Now()}
		c.inflight[ep] = e
	}
	return e
}

// grant hands free places to waiters, first come first served. Called with
// c.mu held.
func (c *Controller) grant(e *endpoint) {
	for len(e.waiters) > 0 && e.n < c.share() {
		w := e.waiters[0]
		e.waiters = e.waiters[1:]
		w.start = c.hold(e)
		close(w.ch)
	}
}

// hold counts one more place held at e, from now. Called with c.mu held.
func (c *Controller) hold(e *endpoint) time.Time {
	now := time.Now()
	e.n++
	if c.running++; c.running == 1 {
		c.ended = now
	}
	return now
}

// take reserves an in-flight place for ep if this instance's share allows
// and nobody waits for one.
func (c *Controller) take(ep string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(ep)
	c.grant(e) // the share may have grown
	if len(e.waiters) > 0 || e.n >= c.share() {
		return nil, false
	}
	return c.place(ep, c.hold(e)), true
}

// place is the idempotent release of a place at ep held from start.
func (c *Controller) place(ep string, start time.Time) func() {
	var once sync.Once
	return func() { once.Do(func() { c.release(ep, start) }) }
}

// release gives a place back, or hands it to the first waiter.
func (c *Controller) release(ep string, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.inflight[ep]
	now := time.Now()
	e.n--
	c.running--
	e.ended, c.ended = now, now
	l := c.latency[ep]
	if l == nil {
		l = &latency{}
		c.latency[ep] = l
	}
	old := l.avg
	l.avg, l.seen = smooth(old, now.Sub(start), 8), now
	c.latencySum += l.avg - old
	c.grant(e)
	if e.n == 0 && len(e.waiters) == 0 {
		delete(c.inflight, ep)
	}
}

// smooth adds x to the moving average avg of about n values (avg zero:
// none yet).
func smooth(avg, x time.Duration, n int64) time.Duration {
	if avg == 0 {
		return x
	}
	return avg + (x-avg)/time.Duration(n)
}

// Slow reports whether ep's attempts take much longer here than the other
// endpoints' (over SlowFactor times, and over MinSlow): its smoothed
// latency, or if longer the time since one of its attempts last ended (an
// endpoint that stops answering soon looks slow), against the mean of the
// others' smoothed latencies, or if longer and others have attempts in
// flight, the time since any attempt ended (when everything stalls, the
// endpoint is not the cause). An
// endpoint with no other to compare with is not slow. An endpoint that is
// busy but not slow frees places about as fast as the others do, so
// waiting for one costs little more than waiting for any delivery.
func (c *Controller) Slow(ep string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.inflight[ep]
	if e == nil || e.n == 0 {
		return false
	}
	now := time.Now()
	own := now.Sub(e.ended)
	others, sum := len(c.latency), c.latencySum
	if l := c.latency[ep]; l != nil {
		own = max(own, l.avg)
		others, sum = others-1, sum-l.avg
	}
	if others == 0 {
		return false
	}
	ref := sum / time.Duration(others)
	if c.running > e.n { // others have attempts in flight: are they stalled too?
		ref = max(ref, now.Sub(c.ended))
	}
	return own > MinSlow && own > SlowFactor*ref
}

// An endpoint is slow if its attempts take over SlowFactor times as long
// as the others', and over MinSlow.
const (
	SlowFactor = 4
	MinSlow    = 10 * time.Millisecond
)

// forgetLatencies drops the latencies of endpoints without an attempt for
// a minute. Called with c.mu held.
func (c *Controller) forgetLatencies(now time.Time) {
	for ep, l := range c.latency {
		if now.Sub(l.seen) > time.Minute {
			if e := c.inflight[ep]; e == nil || e.n == 0 {
				c.latencySum -= l.avg
				delete(c.latency, ep)
			}
		}
	}
}

// Wait waits its turn for a place at ep, first come first served, until
// ctx ends (its error is returned; no place is held). The place it hands
// over is a Decision like Admit's, Go with its Release; but if ep's
// breaker opened meanwhile, the place is given back and the Decision is
// Open (until now at the earliest: Admit again then to probe).
func (c *Controller) Wait(ctx context.Context, ep string) (Decision, error) {
	c.mu.Lock()
	e := c.entry(ep)
	c.grant(e)
	var w *waiter
	if len(e.waiters) == 0 && e.n < c.share() {
		w = &waiter{start: c.hold(e)}
		c.mu.Unlock()
	} else {
		w = &waiter{ch: make(chan struct{})}
		e.waiters = append(e.waiters, w)
		c.mu.Unlock()
		select {
		case <-w.ch:
		case <-ctx.Done():
			c.mu.Lock()
			if i := slices.Index(e.waiters, w); i >= 0 {
				e.waiters = slices.Delete(e.waiters, i, i+1)
				if e.n == 0 && len(e.waiters) == 0 {
					delete(c.inflight, ep)
				}
				c.mu.Unlock()
				return Decision{}, ctx.Err()
			}
			c.mu.Unlock() // handed a place meanwhile: it is ours
		}
	}
	release := c.place(ep, w.start)
	c.mu.Lock()
	st, isOpen := c.open[ep]
	c.mu.Unlock()
	if isOpen {
		release()
		until := time.Now()
		if st.until.After(until) {
			until = st.until
		}
		return Decision{Answer: Open, Until: until}, nil
	}
	return Decision{Answer: Go, Release: release}, nil
}

// Success reports that ep answered (any status but a retryable one). It
// reports whether that closed its breaker.
func (c *Controller) Success(ctx context.Context, ep string) (closed bool) {
	c.mu.Lock()
	suspect := c.suspect[ep]
	delete(c.suspect, ep)
	_, wasOpen := c.open[ep]
	delete(c.open, ep)
	c.mu.Unlock()
	if !suspect && !wasOpen {
		return false // the usual case: nothing shared to change
	}
	// One round trip; in a Cluster the index may be on another node.
	if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, c.stateKey(ep), c.failsKey(ep), c.probeKey(ep))
		p.HDel(ctx, c.breakersKey(), ep)
		return nil
	}); err != nil {
		c.opts.Logger.Debug("circuit breaker not reset in Redis", "endpoint", ep, "err", err)
	}
	if wasOpen {
		c.metrics.transitions.WithLabelValues("closed").Inc()
	}
	return wasOpen
}

// Failure reports a failed attempt to ep (no answer, or a retryable
// status). The Threshold-th failure with no success in between, or a
// failed probe, opens the breaker for every instance; then it returns the
// end of the open period.
func (c *Controller) Failure(ctx context.Context, ep string) (openUntil time.Time, opened bool) {
	c.mu.Lock()
	c.suspect[ep] = true
	c.mu.Unlock()
	res, err := failScript.Run(ctx, c.rdb, []string{c.stateKey(ep), c.failsKey(ep), c.probeKey(ep)},
		c.opts.Threshold, time.Now().UnixMilli(), c.opts.BaseCooldown.Milliseconds(), c.opts.MaxCooldown.Milliseconds()).Text()
	if err != nil {
		c.opts.Logger.Debug("failure not counted for the circuit breaker", "endpoint", ep, "err", err)
		return time.Time{}, false
	}
	state, v, _ := strings.Cut(res, " ")
	st, ok := parseOpen(v)
	if !ok {
		return time.Time{}, false
	}
	c.mu.Lock()
	c.open[ep] = st // already open: another instance opened it
	c.mu.Unlock()
	c.index(ctx, ep, v) // also repairs an index that missed it
	if state != "opened" {
		return time.Time{}, false
	}
	c.metrics.transitions.WithLabelValues("opened").Inc()
	return st.until, true
}

// failScript counts a failure. At the threshold, or when the breaker is
// half-open (its open period is over: this was the probe), it (re)opens the
// breaker and returns "opened until:cooldown" (milliseconds); if the
// breaker is open already, "open until:cooldown"; otherwise "".
//
// KEYS: breaker state, failure counter, probe lock (one hash slot). ARGV:
// threshold, now, base cooldown, max cooldown. The state outlives its open
// period by a day, so that a failed probe doubles the cooldown; an
// endpoint nobody tried for that long starts afresh.
var failScript = redis.NewScript(`
local cur = redis.call("GET", KEYS[1])
local now = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
if cur then
  local untilms, cd = string.match(cur, "(%d+):(%d+)")
  if tonumber(untilms) > now then return "open " .. cur end
  cooldown = math.min(tonumber(cd) * 2, tonumber(ARGV[4]))
else
  local n = redis.call("INCR", KEYS[2])
  redis.call("PEXPIRE", KEYS[2], 600000)
  if n < tonumber(ARGV[1]) then return "" end
end
local v = tostring(now + cooldown) .. ":" .. tostring(cooldown)
redis.call("SET", KEYS[1], v, "PX", cooldown + 86400000)
redis.call("DEL", KEYS[2], KEYS[3])
return "opened " .. v`)

func parseOpen(v string) (openState, bool) {
	until, cd, ok := strings.Cut(v, ":")
	if !ok {
		return openState{}, false
	}
	u, err1 := strconv.ParseInt(until, 10, 64)
	d, err2 := strconv.ParseInt(cd, 10, 64)
	if err1 != nil || err2 != nil {
		return openState{}, false
	}
	return openState{until: time.UnixMilli(u), cooldown: time.Duration(d) * time.Millisecond}, true
}

// Run keeps the shared state fresh until ctx ends: it heartbeats this
// instance, counts the live ones and reads the breakers. On return it
// removes this instance from the count.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	for {
		c.mu.Lock()
		c.forgetLatencies(time.Now())
		c.mu.Unlock()
		if err := c.refresh(ctx); err != nil && ctx.Err() == nil {
			c.opts.Logger.Debug("admission state not refreshed", "err", err)
		}
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			c.rdb.ZRem(lctx, c.instancesKey(), c.instance)
			return ctx.Err()
		case <-t.C:
		}
	}
}

// An instance that has not heartbeaten for staleAfter is not counted.
func (c *Controller) staleAfter() time.Duration { return 5*c.opts.Refresh + 5*time.Second }

func (c *Controller) refresh(ctx context.Context) error {
	now := time.Now()
	var live *redis.IntCmd
	var breakers *redis.MapStringStringCmd
	// Not a transaction: in a Cluster the two keys may be on two nodes;
	// the commands on the instances key still run in order.
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, c.instancesKey(), redis.Z{Score: float64(now.UnixMilli()), Member: c.instance})
		p.ZRemRangeByScore(ctx, c.instancesKey(), "-inf", fmt.Sprint(now.Add(-c.staleAfter()).UnixMilli()))
		live = p.ZCard(ctx, c.instancesKey())
		breakers = p.HGetAll(ctx, c.breakersKey())
		return nil
	})
	if err != nil {
		return err
	}
	open := make(map[string]openState, len(breakers.Val()))
	for ep, v := range breakers.Val() {
		if st, ok := parseOpen(v); ok {
			open[ep] = st
		}
	}
	c.metrics.open.Set(float64(len(open)))
	c.mu.Lock()
	c.instances = max(1, int(live.Val()))
	c.open = open
	c.mu.Unlock()
	c.metrics.instances.Set(float64(live.Val()))
	return nil
}

type metrics struct {
	transitions *prometheus.CounterVec
	open        prometheus.Gauge
	instances   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_circuit_breaker_transitions_total",
			Help: "Circuit breakers this instance opened (or reopened after a failed probe) or closed, by state entered.",
		}, []string{"state"}),
		open: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_circuit_breakers_open",
			Help: "Endpoints whose circuit breaker is open or half-open, over all instances.",
		}),
		instances: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_instances",
			Help: "Live feedbackd instances sharing the per-endpoint in-flight limit.",
		}),
	}
	for _, s := range []string{"opened", "closed"} {
		m.transitions.WithLabelValues(s)
	}
	return m
}

// Breaker is an endpoint's circuit breaker as Redis holds it.
type Breaker struct {
	// State is closed, open (no attempt before Until) or half_open (the
	// cooldown is over: the next attempt is the probe).
	State string `json:"state"`
	// Until is the end of the cooldown of an open or half-open breaker.
	Until *time.Time `json:"until,omitempty"`
	// Failures since the last success, while the breaker is closed.
	Failures int64 `json:"failures"`
}

// Breaker reads endpoint ep's circuit breaker. It changes nothing.
func (c *Controller) Breaker(ctx context.Context, ep string) (Breaker, error) {
	v, err := c.rdb.Get(ctx, c.stateKey(ep)).Result()
	if err != nil && err != redis.Nil {
		return Breaker{}, fmt.Errorf("circuit breaker: %w", err)
	}
	if s, ok := parseOpen(v); ok {
		b := Breaker{State: "half_open", Until: &s.until}
		if time.Now().Before(s.until) {
			b.State = "open"
		}
		return b, nil
	}
	n, err := c.rdb.Get(ctx, c.failsKey(ep)).Int64()
	if err != nil && err != redis.Nil {
		return Breaker{}, fmt.Errorf("circuit breaker: %w", err)
	}
	return Breaker{State: "closed", Failures: n}, nil
}
