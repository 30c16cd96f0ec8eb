package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/pipeline"
	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestRedisSlow(t *testing.T) {
	tests := []struct {
		name string
		err  error
		slow bool
	}{
		{"the check's deadline", context.DeadlineExceeded, true},
		{"a read timed out", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"wrapped read timeout", fmt.Errorf("ping: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), true},
		{"no pool connection in time", redis.ErrPoolTimeout, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{"dial timed out", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"dial cut by the deadline", &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, false},
		{"DNS", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "redis.invalid", IsNotFound: true}}, false},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false},
		{"closed by the server", io.EOF, false},
		{"wrong password", errors.New("WRONGPASS invalid username-password pair or user is disabled."), false},
		{"no auth", errors.New("NOAUTH Authentication required."), false},
		{"TLS to a plain port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{"TLS verification", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false},
		{"cluster down", errors.New("CLUSTERDOWN The cluster is down"), false},
		{"loading", errors.New("LOADING Redis is loading the dataset in memory"), false},
		{"master down", errors.New("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), false},
		{"a replica", errors.New("READONLY You can't write against a read only replica."), false},
		{"client closed", redis.ErrClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redisSlow(tt.err); got != tt.slow {
				t.Errorf("redisSlow(%v) = %v, want %v", tt.err, got, tt.slow)
			}
		})
	}
	if !errors.Is(slowError("x"), pipeline.ErrSlow) {
		t.Error("a slowError is not pipeline.ErrSlow")
	}
}

func TestAutoPoolSize(t *testing.T) {
	tests := []struct{ procs, concurrency, want int }{
		{2, 256, 20},    // go-redis's default
		{2, 4096, 128},  // concurrency / 32
		{2, 8192, 256},  // the cap
		{2, 16384, 256}, // the cap
		{64, 256, 640},  // never below go-redis's default
	}
	for _, tt := range tests {
		if got := autoPoolSize(tt.procs, tt.concurrency); got != tt.want {
			t.Errorf("autoPoolSize(%d, %d) = %d, want %d", tt.procs, tt.concurrency, got, tt.want)
		}
	}
	c := valid()
	c.Redis.PoolSize = 7
	if got := c.RedisPoolSize(); got != 7 {
		t.Errorf("redis.pool_size 7: RedisPoolSize() = %d", got)
	}
}

func TestRedisPoolSizeValidated(t *testing.T) {
	for _, n := range []int{-1, maxRedisPool + 1} {
		c := valid()
		c.Redis.PoolSize = n
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "redis.pool_size:") {
			t.Errorf("pool_size %d: Validate() = %v, want an error about redis.pool_size", n, err)
		}
	}
	for _, n := range []int{0, 1, 256} {
		c := valid()
		c.Redis.PoolSize = n
		if err := c.Validate(); err != nil {
			t.Errorf("pool_size %d: %v", n, err)
		}
	}
}

// newHealth is the health check feedbackd builds for r, with its registry.
func newHealth(t *testing.T, r RedisConfig) (*redisHealth, *prometheus.Registry) {
	t.Helper()
	rdb, err := r.NewRedisCheckClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	return newRedisHealth(r, rdb, reg), reg
}

func check(h *redisHealth) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return h.Check(ctx)
}

// Every connection of feedbackd's pool held by a blocking command: a
// command of the pool waits, the health check answers.
func TestRedisHealthWithEveryPoolConnectionBusy(t *testing.T) {
	srv := testenv.StartRedis(t)
	cfg := RedisConfig{Addr: srv.Addr, PoolSize: 4}
	rdb, err := cfg.NewRedisClient()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	registerPoolStats(reg, rdb, cfg.PoolSize)
	h, _ := newHealth(t, cfg)

	var busy sync.WaitGroup
	for i := range cfg.PoolSize {
		busy.Go(func() { rdb.BLPop(context.Background(), 30*time.Second, fmt.Sprint("busy", i)) })
	}
	testenv.Eventually(t, "every pool connection in a BLPOP", 10*time.Second, func() bool {
		n, _ := srv.Client.Do(context.Background(), "CLIENT", "LIST").Text()
		return strings.Count(n, "cmd=blpop") == cfg.PoolSize
	})
	pinged := make(chan error, 1)
	go func() { pinged <- rdb.Ping(context.Background()).Err() }()
	testenv.Eventually(t, "a command waiting for a pool connection", 5*time.Second, func() bool {
		return rdb.PoolStats().PendingRequests > 0 || metric(t, reg, "feedbackd_redis_pool_misses_total") > float64(cfg.PoolSize)
	})

	if err := check(h); err != nil {
		t.Fatalf("health check with the pool busy: %v", err)
	}
	select {
	case err := <-pinged:
		t.Fatalf("a ping through the pool returned (%v) while every connection was busy: the test holds nothing", err)
	default:
	}
	if c, idle := metric(t, reg, "feedbackd_redis_pool_connections"), metric(t, reg, "feedbackd_redis_pool_idle_connections"); c != float64(cfg.PoolSize) || idle != 0 {
		t.Errorf("pool metrics: %v connections, %v idle; want %d, 0", c, idle, cfg.PoolSize)
	}
	if s := metric(t, reg, "feedbackd_redis_pool_size"); s != float64(cfg.PoolSize) {
		t.Errorf("feedbackd_redis_pool_size = %v", s)
	}

	for i := range cfg.PoolSize {
		srv.Client.LPush(context.Background(), fmt.Sprint("busy", i), "x")
	}
	busy.Wait()
	if err := <-pinged; err != nil {
		t.Fatalf("ping once connections were free: %v", err)
	}
	if w := metric(t, reg, "feedbackd_redis_pool_waits_total"); w < 1 {
		t.Errorf("feedbackd_redis_pool_waits_total = %v after a command waited", w)
	}
}

// Redis itself made slow: slow (pipeline.ErrSlow), not down. Stopped: down,
// not slow.
func TestRedisHealthSlowAndDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	h, reg := newHealth(t, RedisConfig{Addr: srv.Addr})
	if err := check(h); err != nil {
		t.Fatal(err)
	}

	if err := srv.Client.Do(context.Background(), "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	err := check(h)
	if !errors.Is(err, pipeline.ErrSlow) || !strings.HasPrefix(err.Error(), "redis slow: no answer to PING in ") {
		t.Fatalf("Redis paused: %v, want a slow error", err)
	}
	if s := metric(t, reg, "feedbackd_redis_ping_seconds"); s < 1.9 {
		t.Errorf("feedbackd_redis_ping_seconds = %v after a check that timed out at 2 s", s)
	}
	testenv.Eventually(t, "the check answered after the pause", 10*time.Second, func() bool { return check(h) == nil })

	srv.Kill()
	err = check(h)
	if err == nil || errors.Is(err, pipeline.ErrSlow) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Redis stopped: %v, want down (unreachable), not slow", err)
	}
}

// Before Redis has ever answered, no answer is down: TLS to a plain port
// waits for ever, and start-up says so.
func TestRedisHealthTimeoutBeforeAnyAnswerIsDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	if err := srv.Client.Do(context.Background(), "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	h, _ := newHealth(t, RedisConfig{Addr: srv.Addr})
	err := check(h)
	if err == nil || errors.Is(err, pipeline.ErrSlow) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("no answer before any: %v, want down (timed out)", err)
	}
}

// The pipeline with feedbackd's health check: Redis paused for 3 s only
// warns; paused for longer pauses fetching after the third slow check;
// stopped pauses it without a slow check.
func TestPipelinePausesOnlyForAPersistentSlowRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	kafka := testenv.StartKafka(t)
	h, reg := newHealth(t, RedisConfig{Addr: srv.Addr})
	pipe, err := pipeline.New([]kgo.Opt{kgo.SeedBrokers(kafka.Seeds...)}, nil, nil, pipeline.Options{
		Group: "g", InputTopics: []string{"in"}, RetryPrefix: "in.retry", DLQTopic: "in.dlq",
		Dependency: h.Check, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipe.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	paused := func() float64 { return metric(t, reg, "feedbackd_consumption_paused") }
	slow := func() float64 { return metric(t, reg, "feedbackd_dependency_slow_total") }
	pause := func(ms int) {
		t.Helper()
		if err := srv.Client.Do(context.Background(), "CLIENT", "PAUSE", ms, "ALL").Err(); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "a check answered", 10*time.Second, h.answered.Load)

	// 3 s: at most two checks in a row time out (2 s each, the next at once).
	pause(3000)
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		if paused() != 0 {
			t.Fatalf("fetching paused for Redis slow for 3 s (%v slow checks)", slow())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if slow() < 1 {
		t.Fatal("no slow check counted while Redis was paused for 3 s")
	}

	// Long enough for three slow checks in a row.
	before := slow()
	pause(10000)
	testenv.Eventually(t, "fetching paused for a persistently slow Redis", 10*time.Second, func() bool { return paused() == 1 })
	if n := slow() - before; n < 3 {
		t.Errorf("paused after %v slow checks, want 3", n)
	}
	testenv.Eventually(t, "fetching resumed", 20*time.Second, func() bool { return paused() == 0 })

	before = slow()
	srv.Kill()
	testenv.Eventually(t, "fetching paused for a stopped Redis", 5*time.Second, func() bool { return paused() == 1 })
	if n := slow() - before; n != 0 {
		t.Errorf("a stopped Redis counted %v slow checks", n)
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return 0
}

// A Cluster is down while one of its masters is: its slots' tenants cannot
// be served. It is up again once a replica took over.
func TestRedisHealthCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	h, _ := newHealth(t, RedisConfig{Addrs: c.Addrs})
	if err := check(h); err != nil {
		t.Fatal(err)
	}
	c.KillMasterOf(t, "some-key")
	err := check(h)
	if err == nil || errors.Is(err, pipeline.ErrSlow) {
		t.Fatalf("a master killed: %v, want down", err)
	}
	testenv.Eventually(t, "the check answered after the failover", 30*time.Second, func() bool { return check(h) == nil })
}

// Sentinel: the master is checked, through its failovers.
func TestRedisHealthSentinel(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	h, _ := newHealth(t, RedisConfig{Addrs: s.Sentinels, MasterName: s.MasterName})
	if err := check(h); err != nil {
		t.Fatal(err)
	}
	s.Master.Kill()
	err := check(h)
	if err == nil || errors.Is(err, pipeline.ErrSlow) {
		t.Fatalf("the master killed: %v, want down", err)
	}
	testenv.Eventually(t, "the check answered after the failover", 30*time.Second, func() bool { return check(h) == nil })
}
