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
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Store checks and records delivered webhook ids. It is safe for
// concurrent use. Records are written in batches by one goroutine (one
// round trip for all the ids recorded meanwhile), which Close stops.
type Store struct {
	rdb     redis.Cmdable
	prefix  string
	window  time.Duration
	metrics *Metrics
	records chan record
	quit    chan struct{}
	done    chan struct{}
}

type record struct {
	id   string
	done chan error
}

// maxBatch bounds the ids written in one round trip.
const maxBatch = 512

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("dedupe store closed")

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

// New returns a Store keeping ids under keyPrefix+"delivered:" for window,
// and starts its writer; call Close when done. reg may be nil.
func New(rdb redis.Cmdable, keyPrefix string, window time.Duration, reg prometheus.Registerer) *Store {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Store{
		rdb: rdb, prefix: keyPrefix + "delivered:", window: window, metrics: newMetrics(reg),
		records: make(chan record), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go s.write()
	return s
}

// Close stops the writer after the batch it is writing; later Records
// return ErrClosed. It must be called once.
func (s *Store) Close() {
	close(s.quit)
	<-s.done
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

// Record remembers that id was delivered, for the window, and returns once
// Redis has it, ctx ended or the store is closed. The error is counted as
// well as returned; the caller need not act on it.
func (s *Store) Record(ctx context.Context, id string) error {
	r := record{id: id, done: make(chan error, 1)}
	var err error
	select {
	case s.records <- r:
		select {
		case err = <-r.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.quit:
		err = ErrClosed
	}
	if err != nil {
		s.metrics.errors.WithLabelValues("record").Inc()
		return fmt.Errorf("dedupe record: %w", err)
	}
	return nil
}

// write writes the ids recorded while the previous batch was in flight in
// one pipelined round trip, until Close.
func (s *Store) write() {
	defer close(s.done)
	batch := make([]record, 0, maxBatch)
	cmds := make([]*redis.BoolCmd, 0, maxBatch)
	for {
		select {
		case r := <-s.records:
			batch = append(batch[:0], r)
		case <-s.quit:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.records:
				batch = append(batch, r)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmds = cmds[:0]
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range batch {
				cmds = append(cmds, p.SetNX(ctx, s.prefix+r.id, 1, s.window))
			}
			return nil
		})
		cancel()
		for i, r := range batch {
			r.done <- cmds[i].Err()
		}
	}
}
