// Package failclock keeps, per webhook config, the time since which its
// deliveries fail with no success in between ("failing since"), shared by
// the instances through Redis so that it survives restarts, and says when
// a config has failed for long enough to be disabled (After).
//
// The clock of a config starts at its first failure and stops at its
// next success, on whichever instance either happens:
//
//   - A failure is written at most once per Period per config and
//     instance: a script starts the clock if none runs (or the config
//     changed since it started, or a success came after), and answers
//     whether it has run for After. That answer is given to one caller
//     only: the script stops the clock as it says so, atomically, so a
//     config is disabled once however many instances fail at once.
//   - A success costs no Redis round trip: it is remembered here, and
//     every Period the successes of the configs whose clock runs (an index
//     in Redis, read only when there are successes to write) stop their
//     clocks, if they came after the clock started. So a success on an
//     instance that saw no failure stops a clock another instance started
//     within a Period; a config with no failure costs nothing in Redis.
//
// Period is After/10, at most a minute: a config is disabled up to a
// Period late, and up to a Period early if its only success since the
// clock started came in the Period before (another instance had not
// written it yet).
//
// Redis errors fail safe: nothing is disabled when Redis does not answer;
// they are counted and logged at most once a minute.
package failclock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Options configure a Clock.
type Options struct {
	KeyPrefix  string        // Redis key prefix, e.g. "feedbackd:"
	After      time.Duration // failing this long disables a config; must be positive
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Clock is the failure clock of one instance. It is safe for concurrent
// use. Run writes the successes; without it they are written only when
// Flush is called.
type Clock struct {
	rdb     redis.UniversalClient
	prefix  string
	after   time.Duration
	period  time.Duration
	ttl     time.Duration
	log     *slog.Logger
	errors  prometheus.Counter
	mu      sync.Mutex
	configs map[id]*config
	logged  time.Time // when a Redis error was last logged
}

// id names a config; its Redis name is "<org>/<sandboxId>" (id.String).
type id struct{ org, sandboxID string }

func (i id) String() string { return i.org + "/" + i.sandboxID }

// config is what this instance knows of one config's clock.
type config struct {
	wrote time.Time // when a failure was last written
	ok    time.Time // the last success not written yet; zero if none
}

// New returns a Clock keeping its shared state in rdb.
func New(rdb redis.UniversalClient, opts Options) *Clock {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	after := max(opts.After, time.Millisecond)
	return &Clock{
		rdb: rdb, prefix: opts.KeyPrefix, after: after,
		period: max(min(time.Minute, after/10), time.Millisecond),
		// A clock nobody wrote to for a day past After is forgotten: its
		// config had no failure (nor event) for that long.
		ttl: after + 24*time.Hour,
		log: opts.Logger,
		errors: promauto.With(opts.Registerer).NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_failure_clock_errors_total",
			Help: "Redis errors of the failure clock (delivery.disable_after); no config is disabled on an error.",
		}),
		configs: map[id]*config{},
	}
}

// After is how long a config fails before Failure says to disable it.
func (c *Clock) After() time.Duration { return c.after }

// Period is how often, at most, a config's failures are written by this
// instance, and its successes shared.
func (c *Clock) Period() time.Duration { return c.period }

// Keys. A config's clock is one hash, tagged with the config so that a
// Cluster spreads them; the index of running clocks is read by every
// instance with successes to write, once a Period.
func (c *Clock) clockKey(cfg string) string { return c.prefix + "failclock:{" + cfg + "}" }
func (c *Clock) indexKey() string           { return c.prefix + "failing" }

// Success records a successful delivery to the config at at.
func (c *Clock) Success(org, sandboxID string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.succeeded(id{org, sandboxID}, at)
}

// succeeded notes a success of k at at, to be written; c.mu is held.
func (c *Clock) succeeded(k id, at time.Time) {
	cf := c.configs[k]
	if cf == nil {
		cf = &config{}
		c.configs[k] = cf
	}
	if at.After(cf.ok) {
		cf.ok = at
	}
}

// Failure records a failed delivery to the config at at (or an event
// deferred because its endpoint's breaker is open). changed is when the
// config was last changed: a clock started before a change (re-enabling
// it, a new URL) starts again. disable is true, for one caller over all
// instances, once the clock has run for After since since; the clock is
// then stopped. Within a Period of the last failure written here, and on
// Redis errors, the answer is false without a round trip.
func (c *Clock) Failure(ctx context.Context, org, sandboxID string, changed, at time.Time) (since time.Time, disable bool) {
	k := id{org, sandboxID}
	c.mu.Lock()
	cf := c.configs[k]
	if cf == nil {
		cf = &config{}
		c.configs[k] = cf
	}
	if at.Sub(cf.wrote) < c.period {
		c.mu.Unlock()
		return time.Time{}, false
	}
	cf.wrote = at
	ok := cf.ok
	cf.ok = time.Time{} // the script takes it into account
	c.mu.Unlock()

	var res *redis.Cmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// The index first: a clock started is always listed.
		p.ZAdd(ctx, c.indexKey(), redis.Z{Score: float64(at.UnixMilli()), Member: k.String()})
		// EVAL, not EVALSHA: in a pipeline a missing script is not
		// loaded on the fly; the script is short, and sent once a Period.
		res = failScript.Eval(ctx, p, []string{c.clockKey(k.String())}, at.UnixMilli(), c.after.Milliseconds(),
			changed.UnixMilli(), millis(ok), c.ttl.Milliseconds())
		return nil
	})
	var v []int64
	if err == nil {
		v, err = res.Int64Slice()
	}
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("failure clock script answered %v", v)
	}
	if err != nil {
		c.failed(ctx, "failure not recorded", err)
		c.mu.Lock()
		if ok.After(cf.ok) { // a success must not be lost: write it next time
			cf.ok = ok
		}
		c.mu.Unlock()
		return time.Time{}, false
	}
	return time.UnixMilli(v[0]), v[1] == 1
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// failScript records a failure. It returns {since, 1} if the clock has
// run for After since since (and stops it), or {since, 0}.
//
// KEYS: the config's clock. ARGV: now, After, when the config changed, the
// caller's last success not written yet (0: none; all in Unix
// milliseconds), the key's TTL in milliseconds.
var failScript = redis.NewScript(`
local now, after, changed, ok = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local since = tonumber(redis.call("HGET", KEYS[1], "since"))
local gen = tonumber(redis.call("HGET", KEYS[1], "gen")) or 0
if changed > gen then
  since = nil
  redis.call("HSET", KEYS[1], "gen", changed)
end
if since and ok >= since then since = nil end
if not since then
  since = now
  redis.call("HSET", KEYS[1], "since", since)
end
if now - since >= after then
  redis.call("HDEL", KEYS[1], "since")
  return {since, 1}
end
redis.call("PEXPIRE", KEYS[1], ARGV[5])
return {since, 0}`)

// okScript stops a clock started at or before a success. It returns 1 if
// no clock runs any more (the config may leave the index), 0 if one
// started after the success.
//
// KEYS: the config's clock. ARGV: the success, in Unix milliseconds.
var okScript = redis.NewScript(`
local since = tonumber(redis.call("HGET", KEYS[1], "since"))
if not since then return 1 end
if tonumber(ARGV[1]) >= since then
  redis.call("HDEL", KEYS[1], "since")
  return 1
end
return 0`)

// Flush writes the successes recorded since the last Flush, for the
// configs whose clock runs; the others are dropped. It also forgets the
// configs this instance has heard nothing of for a Period. On an error,
// the successes are kept for the next Flush.
func (c *Clock) Flush(ctx context.Context, now time.Time) error {
	oks := map[id]time.Time{}
	c.mu.Lock()
	for k, cf := range c.configs {
		if !cf.ok.IsZero() {
			oks[k] = cf.ok
			cf.ok = time.Time{}
		}
		if cf.ok.IsZero() && now.Sub(cf.wrote) >= c.period {
			delete(c.configs, k)
		}
	}
	c.mu.Unlock()
	if len(oks) == 0 {
		return nil
	}
	err := c.flush(ctx, now, oks)
	if err != nil {
		c.failed(ctx, "successes not recorded", err)
		c.mu.Lock()
		for k, ok := range oks {
			c.succeeded(k, ok)
		}
		c.mu.Unlock()
	}
	return err
}

func (c *Clock) flush(ctx context.Context, now time.Time, oks map[id]time.Time) error {
	byName := make(map[string]time.Time, len(oks))
	for k, ok := range oks {
		byName[k.String()] = ok
	}
	idx := c.indexKey()
	if err := c.rdb.ZRemRangeByScore(ctx, idx, "-inf", fmt.Sprint(now.Add(-c.ttl).UnixMilli())).Err(); err != nil {
		return err
	}
	running, err := c.rdb.ZRevRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return err
	}
	type stop struct {
		cfg string
		res *redis.Cmd
	}
	var stops []stop
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range running {
			if ok, seen := byName[k]; seen {
				stops = append(stops, stop{k, okScript.Eval(ctx, p, []string{c.clockKey(k)}, ok.UnixMilli())})
			}
		}
		return nil
	})
	if err != nil || len(stops) == 0 {
		return err
	}
	var done []any
	for _, s := range stops {
		if n, err := s.res.Int(); err == nil && n == 1 {
			done = append(done, s.cfg)
		}
	}
	if len(done) == 0 {
		return nil
	}
	// A failure elsewhere may list a config again meanwhile; if this
	// removes it, that instance's next failure (within a Period) lists it
	// again.
	return c.rdb.ZRem(ctx, idx, done...).Err()
}

// Run flushes the successes every Period until ctx ends, and once more
// then (for up to a second).
func (c *Clock) Run(ctx context.Context) {
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = c.Flush(fctx, time.Now())
			cancel()
			return
		case now := <-t.C:
			_ = c.Flush(ctx, now)
		}
	}
}

// failed counts a Redis error and logs it, at most once a minute.
func (c *Clock) failed(ctx context.Context, what string, err error) {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	c.errors.Inc()
	c.mu.Lock()
	now := time.Now()
	quiet := now.Sub(c.logged) < time.Minute
	if !quiet {
		c.logged = now
	}
	c.mu.Unlock()
	if !quiet {
		c.log.Warn("failure clock: Redis did not answer; no config is disabled meanwhile (logged once a minute)",
			"what", what, "error", strings.TrimSpace(err.Error()))
	}
}
