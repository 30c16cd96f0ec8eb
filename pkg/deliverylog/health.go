package deliverylog

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// Counts are a config's records of a period by kind: attempts by label
// (success, retryable, rejected, error), outcomes by what they settled
// with (delivered, retried, dead_lettered, ...), endpoint events by type.
type Counts struct {
	Attempts map[string]int64 `json:"attempts"`
	Outcomes map[string]int64 `json:"outcomes"`
	Events   map[string]int64 `json:"events"`
}

func newCounts() Counts {
	return Counts{Attempts: map[string]int64{}, Outcomes: map[string]int64{}, Events: map[string]int64{}}
}

func (c Counts) add(field string, n int64) {
	kind, name, _ := strings.Cut(field, ":")
	switch kind {
	case "attempt":
		c.Attempts[name] += n
	case "outcome":
		c.Outcomes[name] += n
	case "event":
		c.Events[name] += n
	}
}

// successRate is the share of attempts that succeeded, rounded to 4
// decimals (0.9928: 99.28%); nil with no attempts.
func (c Counts) successRate() *float64 {
	var all int64
	for _, n := range c.Attempts {
		all += n
	}
	if all == 0 {
		return nil
	}
	r := math.Round(float64(c.Attempts["success"])/float64(all)*1e4) / 1e4
	return &r
}

// Durations are percentiles of attempt durations, in milliseconds.
type Durations struct {
	Samples int      `json:"samples"`
	P50     *float64 `json:"p50"`
	P99     *float64 `json:"p99"`
}

// Health is what the log says about a config's endpoint. The admin API
// adds the breaker state and the config's own fields.
type Health struct {
	// LastHour: the current ten-minute bucket and the five before it;
	// LastDay: the current and the 143 before it (package doc).
	LastHour    Counts `json:"lastHour"`
	LastDay     Counts `json:"lastDay"`
	SuccessRate Rates  `json:"successRate"`
	// AttemptDurationMs: of the attempts the log holds of the last day
	// (at most delivery_log.per_config).
	AttemptDurationMs Durations  `json:"attemptDurationMs"`
	LastSuccess       *time.Time `json:"lastSuccess"`
	LastFailure       *Failure   `json:"lastFailure"`
}

// Rates are shares of successful attempts; nil with no attempts.
type Rates struct {
	LastHour *float64 `json:"lastHour"`
	LastDay  *float64 `json:"lastDay"`
}

// Health reads the health of org/sandbox's endpoint as of now.
func (l *Log) Health(ctx context.Context, org, sandbox string, now time.Time) (Health, error) {
	cfg := configKey(org, sandbox)
	h := Health{LastHour: newCounts(), LastDay: newCounts()}
	p := l.rdb.Pipeline()
	const day = int(24 * time.Hour / Bucket)
	const hour = int(time.Hour / Bucket)
	cur := bucketOf(now)
	buckets := make([]*redis.MapStringStringCmd, day)
	for i := range buckets {
		buckets[i] = p.HGetAll(ctx, l.countsKey(cfg, cur-int64(i)*int64(Bucket/time.Second)))
	}
	last := p.HGetAll(ctx, l.lastKey(cfg))
	if _, err := p.Exec(ctx); err != nil {
		return Health{}, fmt.Errorf("delivery log health of %s: %w", cfg, err)
	}
	for i, b := range buckets {
		for f, v := range b.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			h.LastDay.add(f, n)
			if i < hour {
				h.LastHour.add(f, n)
			}
		}
	}
	h.SuccessRate = Rates{LastHour: h.LastHour.successRate(), LastDay: h.LastDay.successRate()}
	lv := last.Val()
	if t, err := time.Parse(time.RFC3339Nano, lv["success"]); err == nil {
		h.LastSuccess = &t
	}
	if s := lv["failure"]; s != "" {
		var f Failure
		if json.Unmarshal([]byte(s), &f) == nil {
			h.LastFailure = &f
		}
	}
	d, err := l.durations(ctx, cfg, maxTime(now.Add(-24*time.Hour), l.horizon(time.Time{})))
	if err != nil {
		return Health{}, err
	}
	h.AttemptDurationMs = d
	return h, nil
}

// durations are the percentiles of the attempts in the stream since from.
func (l *Log) durations(ctx context.Context, cfg string, from time.Time) (Durations, error) {
	var ms []float64
	end, start := "+", strconv.FormatInt(from.UnixMilli(), 10)
	for {
		msgs, err := l.rdb.XRevRangeN(ctx, l.streamKey(cfg), end, start, chunk).Result()
		if err != nil {
			return Durations{}, fmt.Errorf("delivery log of %s: %w", cfg, err)
		}
		for _, m := range msgs {
			if r, ok := decode(m); ok && r.Type == outcome.TypeAttempt && r.DurationMs != nil && !r.Time.Before(from) {
				ms = append(ms, *r.DurationMs)
			}
		}
		if len(msgs) < chunk {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	d := Durations{Samples: len(ms)}
	if len(ms) == 0 {
		return d, nil
	}
	slices.Sort(ms)
	d.P50, d.P99 = percentile(ms, 0.50), percentile(ms, 0.99)
	return d, nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) *float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	v := sorted[min(max(i, 0), len(sorted)-1)]
	return &v
}

// ConfigID names a config: its organisation and sandbox.
type ConfigID struct{ Org, Sandbox string }

// DayRates returns each config's share of successful attempts over the
// last day as of now (Health's SuccessRate.LastDay), nil for a config
// without attempts: the light read of a list of configs, its day count
// buckets only (no stream, no last success or failure), for every config
// in one pipelined round trip.
func (l *Log) DayRates(ctx context.Context, configs []ConfigID, now time.Time) ([]*float64, error) {
	if len(configs) == 0 {
		return nil, nil
	}
	const day = int(24 * time.Hour / Bucket)
	cur := bucketOf(now)
	p := l.rdb.Pipeline()
	cmds := make([][]*redis.MapStringStringCmd, len(configs))
	for i, c := range configs {
		cfg := configKey(c.Org, c.Sandbox)
		cmds[i] = make([]*redis.MapStringStringCmd, day)
		for j := range cmds[i] {
			cmds[i][j] = p.HGetAll(ctx, l.countsKey(cfg, cur-int64(j)*int64(Bucket/time.Second)))
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("delivery log day rates of %d configs: %w", len(configs), err)
	}
	out := make([]*float64, len(configs))
	for i, buckets := range cmds {
		c := newCounts()
		for _, b := range buckets {
			for f, v := range b.Val() {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					c.add(f, n)
				}
			}
		}
		out[i] = c.successRate()
	}
	return out, nil
}
