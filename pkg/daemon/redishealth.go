package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/pipeline"
)

// redisHealth checks Redis for the pipeline (which pauses fetching while
// Redis is down) and for /readyz, on a client of its own
// (RedisConfig.NewRedisCheckClient): a pool that feedbackd keeps busy never
// makes Redis look down. It is safe for concurrent use.
type redisHealth struct {
	cfg      RedisConfig
	rdb      redis.UniversalClient
	took     prometheus.Gauge
	answered atomic.Bool // a check has succeeded since start
}

func newRedisHealth(cfg RedisConfig, rdb redis.UniversalClient, reg prometheus.Registerer) *redisHealth {
	return &redisHealth{cfg: cfg, rdb: rdb, took: promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "feedbackd_redis_ping_seconds",
		Help: "How long the last health check of Redis (a PING on a connection of its own, every second) took; up to its 2 s timeout when none came.",
	})}
}

// Check pings Redis until ctx's deadline: the server, Sentinel's current
// master, or every master of a Cluster (each holds some tenants' configs,
// dedupe sets and breakers: with one unreachable the pipeline cannot work).
// It returns nil when every ping was answered; an error wrapping
// pipeline.ErrSlow when one was not answered in time (see redisSlow); else
// the one line of RedisConfig.RedisError saying why Redis is down. Until a
// check has succeeded, a timeout is down too: at start-up nothing tells a
// slow server from a wrong port (TLS to a plain one waits for ever).
func (h *redisHealth) Check(ctx context.Context) error {
	start := time.Now()
	var err error
	if cc, ok := h.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	} else {
		err = h.rdb.Ping(ctx).Err()
	}
	took := time.Since(start)
	h.took.Set(took.Seconds())
	switch {
	case err == nil:
		h.answered.Store(true)
		return nil
	case redisSlow(err) && h.answered.Load():
		return slowError(fmt.Sprintf("redis slow: no answer to PING in %s (%s)", took.Round(time.Millisecond), h.cfg.Describe()))
	}
	return h.cfg.RedisError(err)
}

// redisSlow reports whether err means that Redis did not answer in time,
// rather than that it refused, failed or is unreachable: a command on an
// open connection timed out (the check's deadline, an i/o timeout), or the
// wait for a connection did. A dial that timed out is an outage: the kernel
// accepts connections for a server too busy to answer, so a host that
// drops them is gone. Refused or reset connections, DNS, authentication and
// TLS failures, CLUSTERDOWN, LOADING, MASTERDOWN or READONLY answers are
// not slow.
func redisSlow(err error) bool {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return false
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout)
}

// slowError is a check that got no answer in time: pipeline.ErrSlow.
type slowError string

func (e slowError) Error() string      { return string(e) }
func (slowError) Is(target error) bool { return target == pipeline.ErrSlow }

// poolStats exports go-redis's pool counters (summed over a Cluster's
// masters) as feedbackd_redis_pool_*, read at each scrape, so that a
// saturated pool shows: timeouts and waits grow, idle connections stay 0.
type poolStats struct {
	rdb                                     redis.UniversalClient
	size                                    float64
	hits, misses, timeouts, waits, waitSecs *prometheus.Desc
	conns, idle, sizeDesc                   *prometheus.Desc
}

func registerPoolStats(reg prometheus.Registerer, rdb redis.UniversalClient, size int) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("feedbackd_redis_pool_"+name, help, nil, nil)
	}
	reg.MustRegister(&poolStats{
		rdb:      rdb,
		size:     float64(size),
		hits:     d("hits_total", "Commands that found an idle connection in the Redis pool."),
		misses:   d("misses_total", "Commands that found no idle connection in the Redis pool (one was opened, or waited for)."),
		timeouts: d("timeouts_total", "Commands that waited for a Redis pool connection longer than the pool timeout and failed: the pool is too small (redis.pool_size) or Redis too slow."),
		waits:    d("waits_total", "Commands that waited for a Redis pool connection because all were in use."),
		waitSecs: d("wait_seconds_total", "Time commands spent waiting for a Redis pool connection."),
		conns:    d("connections", "Connections the Redis client holds, in use and idle (its pool and the pipelines' own)."),
		idle:     d("idle_connections", "Idle connections of the Redis client (its pool and the pipelines' own)."),
		sizeDesc: d("size", "Most connections the Redis pool opens per server (redis.pool_size, or the automatic size)."),
	})
}

func (p *poolStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.hits, p.misses, p.timeouts, p.waits, p.waitSecs, p.conns, p.idle, p.sizeDesc} {
		ch <- d
	}
}

func (p *poolStats) Collect(ch chan<- prometheus.Metric) {
	s := p.rdb.PoolStats()
	c := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	c(p.hits, float64(s.Hits))
	c(p.misses, float64(s.Misses))
	c(p.timeouts, float64(s.Timeouts))
	c(p.waits, float64(s.WaitCount))
	c(p.waitSecs, time.Duration(s.WaitDurationNs).Seconds())
	conns, idle := s.TotalConns, s.IdleConns
	if ps := s.PipelineStats; ps != nil {
		// Pipelines take a connection of their own pool (10 per server)
		// when one is free, else one of this pool without waiting for
		// the former: only this pool's waits and timeouts count.
		conns, idle = conns+ps.TotalConns, idle+ps.IdleConns
	}
	g(p.conns, float64(conns))
	g(p.idle, float64(idle))
	g(p.sizeDesc, p.size)
}
