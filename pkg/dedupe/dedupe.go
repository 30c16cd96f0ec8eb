// Package dedupe remembers which webhook ids were delivered, in Redis, for
// a window, so that a record read again after a crash or a rebalance (its
// offset was not committed yet) is not sent a second time.
//
// It narrows at-least-once delivery, it does not make it exactly-once: an
// attempt cut short by a crash after the endpoint received it but before
// the answer came back is sent again, with the same webhook-id. Redis
// errors never hold an event back: a failed check lets the attempt go and
// a failed write is only counted, so without Redis the pipeline still
// delivers (at-least-once).
package dedupe

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Store checks and records delivered webhook ids. It is safe for
// concurrent use; it owns no goroutine and needs no Close.
type Store struct {
	rdb     redis.Cmdable
	prefix  string
	window  time.Duration
	metrics *Metrics
}

// Metrics are the package's Prometheus metrics.
type Metrics struct {
	suppressed prometheus.Counter
	errors     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		suppressed: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_duplicates_suppressed_total",
			Help: "Events not sent because their webhook-id was delivered within the dedupe window (re-read after a crash or rebalance).",
		}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_dedupe_errors_total",
			Help: "Dedupe checks (op=check: the attempt went ahead unchecked) and records (op=record) that failed because Redis did not answer.",
		}, []string{"op"}),
	}
	m.errors.WithLabelValues("check")
	m.errors.WithLabelValues("record")
	return m
}

// New returns a Store keeping ids under keyPrefix+"delivered:" for window.
// reg may be nil.
func New(rdb redis.Cmdable, keyPrefix string, window time.Duration, reg prometheus.Registerer) *Store {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Store{rdb: rdb, prefix: keyPrefix + "delivered:", window: window, metrics: newMetrics(reg)}
}

// Delivered reports whether id was delivered within the window. On a Redis
// error it reports false (the attempt should go ahead) and counts it.
func (s *Store) Delivered(ctx context.Context, id string) bool {
	n, err := s.rdb.Exists(ctx, s.prefix+id).Result()
	if err != nil {
		s.metrics.errors.WithLabelValues("check").Inc()
		return false
	}
	if n > 0 {
		s.metrics.suppressed.Inc()
		return true
	}
	return false
}

// Record remembers that id was delivered, for the window. The error is
// counted as well as returned; the caller need not act on it.
func (s *Store) Record(ctx context.Context, id string) error {
	if err := s.rdb.SetNX(ctx, s.prefix+id, 1, s.window).Err(); err != nil {
		s.metrics.errors.WithLabelValues("record").Inc()
		return fmt.Errorf("dedupe record: %w", err)
	}
	return nil
}
