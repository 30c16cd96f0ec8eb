// Package dedupe remembers which events were delivered, in Redis, for a
// window, so that a record read again after a crash or a rebalance (its
// offset was not committed yet) is not sent a second time. Events are named
// by a key the caller chooses (feedbackd: tenant, input record timestamp
// and webhook-id).
//
// Delivered events are kept as 16-byte hashes of their keys in Redis sets,
// one per tenth of the window and shard of the hash,
// <prefix>delivered:{dedupe-<shard>}:<start>+<width> (Unix milliseconds;
// the shard is the Redis Cluster hash tag, so that the sets one check reads
// are on one node), which
// expire a window after they end: recording a batch of deliveries is an
// SADD per shard, and an event costs Redis about 80 bytes. A check looks at
// the sets of the last window, give or take a tenth (clocks of instances
// may differ). Changing the window changes the sets' names: what was
// recorded before is not seen. Claims are leases (pkg/lease) on keys of
// their own, <prefix>claim:<key>.
//
// A record that may have been delivered already is claimed before its
// attempt: the claim says an attempt for the id is in flight, so that two
// copies of one event (a re-read input record and the retry record written
// before the crash) are not sent at the same time. A claim is released
// after an attempt that did not deliver, and otherwise expires (its
// attempt delivered, and a copy checking later finds the record; or its
// holder crashed).
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
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/lease"
)

// Store checks and records delivered webhook ids. It is safe for
// concurrent use. Records and claims are made in batches by one goroutine,
// which Close stops: it waits Linger after the first of a batch for others
// to join, then writes them, with up to batchesInFlight batches written at
// once (a pipelined round trip each, and one more for a batch's claims).
type Store struct {
	rdb     redis.Cmdable
	prefix  string
	window  time.Duration
	width   time.Duration // of a delivered set: a tenth of the window
	metrics *Metrics
	kick    chan struct{} // a batch is pending (capacity 1)
	quit    chan struct{}
	done    chan struct{}
	abort   context.Context // ends the batches still in flight closeGrace after Close
	cancel  context.CancelFunc

	mu      sync.Mutex
	pending *batch // waiting for the writer; nil if none
	closed  bool
}

// batch is what one round trip records and claims. done is closed once it
// is made.
type batch struct {
	records []record
	claims  []*claimOp
	done    chan struct{}
}

// record is one delivered id of a batch, and whom to tell once Redis has it.
type record struct {
	id   string
	then func(error)
}

// claimOp is one claim of a batch, and its answer. A claim is a lease on
// the id's claim key.
type claimOp struct {
	lease lease.Lease
	id    string
	ttl   time.Duration
	state State
}

// Linger is how long the writer waits for a batch to fill. Under load a
// round trip for every few operations costs Redis (and feedbackd) more
// than the operations themselves; the wait delays the end of a delivered
// event's processing, and the attempt of a claimed one, by as much.
const Linger = time.Millisecond

// maxBatch bounds the ids of one SADD.
const maxBatch = 512

// ErrClosed is what Record reports after Close.
var ErrClosed = errors.New("dedupe store closed")

// Claim is the answer to a claim.
type Claim struct {
	State State
	lease lease.Lease // Claimed: the claim key's lease
}

// State says what a claim found.
type State int

const (
	Claimed          State = iota // the attempt may go; Release the claim unless it is recorded as delivered
	AlreadyDelivered              // the id was delivered within the window: do not send it again
	InFlight                      // another attempt for the id holds a claim: try again later
	Unknown                       // Redis did not answer: the attempt goes ahead unclaimed (counted)
)

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
			Help: "Dedupe checks (op=check: the attempt went ahead unchecked), records (op=record) and claim releases (op=release: the claim expires by itself) that failed because Redis did not answer.",
		}, []string{"op"}),
	}
	m.errors.WithLabelValues("check")
	m.errors.WithLabelValues("record")
	m.errors.WithLabelValues("release")
	return m
}

// New returns a Store keeping delivered ids under keyPrefix for window, and
// starts its writer; call Close when done. reg may be nil.
func New(rdb redis.Cmdable, keyPrefix string, window time.Duration, reg prometheus.Registerer) *Store {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Store{
		rdb: rdb, prefix: keyPrefix, window: window, width: max(window/10, time.Millisecond), metrics: newMetrics(reg),
		kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	s.abort, s.cancel = context.WithCancel(context.Background())
	go s.write()
	return s
}

// Close makes the records and claims pending and stops the writer; later
// Records report ErrClosed and Claims are Unknown. Batches still waiting
// for Redis closeGrace later are cut short (their records told the error),
// so that a shutdown with Redis gone does not wait out their timeouts. It
// must be called once.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	defer s.cancel()
	select {
	case <-s.done:
	case <-time.After(closeGrace):
		s.cancel()
		<-s.done
	}
}

// closeGrace is how long Close waits for the batches in flight. Close
// comes after the pipeline's drain (shutdown.timeout), which already
// waited for the records it needed.
const closeGrace = 2 * time.Second

// batchTimeout bounds a batch's round trips: a slow Redis answers within
// it, a gone one is found out.
const batchTimeout = 5 * time.Second

// bucket is the start of the delivered set that t falls in.
func (s *Store) bucket(t time.Time) int64 {
	w := s.width.Milliseconds()
	return t.UnixMilli() / w * w
}

// shards split each tenth of the window into this many sets, by hash, so
// that no set grows large: Redis frees an expired set on its main thread
// (unless lazyfree-lazy-expire is on), and a set of a million ids took
// 0.2 s.
const shards = 16

// deliveredKey names the delivered set of shard for the tenth of the
// window starting at start.
func (s *Store) deliveredKey(start int64, shard byte) string {
	return s.prefix + "delivered:{dedupe-" + strconv.Itoa(int(shard)) + "}:" + strconv.FormatInt(start, 10) + "+" +
		strconv.FormatInt(s.width.Milliseconds(), 10)
}

// windowKeys are the delivered sets of shard an id recorded within the
// window may be in, by any instance: from a window ago to now, and one
// more set on each side for instances whose clocks differ by up to a tenth
// of the window.
func (s *Store) windowKeys(now time.Time, shard byte) []string {
	w := s.width.Milliseconds()
	first, last := s.bucket(now.Add(-s.window))-w, s.bucket(now)+w
	keys := make([]string, 0, (last-first)/w+2)
	for b := first; b <= last; b += w {
		keys = append(keys, s.deliveredKey(b, shard))
	}
	return keys
}

// hash is what a delivered set holds for id, 16 bytes of its SHA-256, and
// its shard.
func hash(id string) (string, byte) {
	sum := sha256.Sum256([]byte(id))
	return string(sum[:16]), sum[16] % shards
}

func (s *Store) claimKey(id string) string { return s.prefix + "claim:" + id }

// pendingLocked is the batch to add an operation to, nil after Close.
// Called with s.mu held.
func (s *Store) pendingLocked() *batch {
	if s.closed {
		return nil
	}
	if s.pending == nil {
		s.pending = &batch{done: make(chan struct{})}
		s.kick <- struct{}{} // cannot block: only the first of a batch sends
	}
	return s.pending
}

// Claim claims id for an attempt that lasts at most ttl, unless it was
// delivered within the window or another attempt holds it. On a Redis error
// the answer is Unknown, counted: the attempt should go ahead.
func (s *Store) Claim(ctx context.Context, id string, ttl time.Duration) Claim {
	op := &claimOp{lease: lease.New(s.rdb, s.claimKey(id), "c:"+rand.Text()), id: id, ttl: ttl, state: Unknown}
	s.mu.Lock()
	b := s.pendingLocked()
	if b != nil {
		b.claims = append(b.claims, op)
	}
	s.mu.Unlock()
	state := Unknown
	if b != nil {
		select {
		case <-b.done:
			state = op.state
		case <-ctx.Done(): // op belongs to the writer until done
		}
	}
	switch state {
	case Claimed:
		return Claim{State: Claimed, lease: op.lease}
	case AlreadyDelivered:
		s.metrics.suppressed.Inc()
	case Unknown:
		s.metrics.errors.WithLabelValues("check").Inc()
	}
	return Claim{State: state}
}

// Delivered reports whether id was recorded as delivered within the
// window; false if Redis does not answer.
func (s *Store) Delivered(ctx context.Context, id string) bool {
	var seen []*redis.BoolCmd
	h, shard := hash(id)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range s.windowKeys(time.Now(), shard) {
			seen = append(seen, p.SIsMember(ctx, k, h))
		}
		return nil
	})
	return err == nil && slices.ContainsFunc(seen, func(c *redis.BoolCmd) bool { return c.Val() })
}

// Release ends a claim whose attempt did not deliver, so that the next
// attempt for the id need not wait for it to expire. Releasing anything but
// a Claimed claim, or a claim that expired and was taken by another attempt
// since, does nothing. It still works once ctx has ended (an attempt cut
// short by shutdown releases its claim), for up to 2 seconds. id is the
// id c claimed; c itself names the claim's key.
func (s *Store) Release(ctx context.Context, id string, c Claim) {
	if c.State != Claimed {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := c.lease.Release(ctx); err != nil {
		s.metrics.errors.WithLabelValues("release").Inc() // it expires by itself
	}
}

// Record remembers that id was delivered, for the window. It does not
// wait: then is called once, on the goroutine that writes its batch, with
// nil once Redis has it or an error (counted) if Redis did not take it;
// after Close, at once on the caller's, with ErrClosed. The records of one
// batch are all told the same error value, which says how many they are:
// log it once. then must not block: it holds up the records of its batch
// that come after it.
//
// What is waiting is bounded by time, not by count: a batch gets its
// answer or its error within batchTimeout, and the ones after it wait for
// at most batchesInFlight of them.
//
// Waiting for the answer instead kept a goroutine per delivered event: on a
// starved machine with 16,384 deliveries in flight, 11,540 delivered jobs
// were waiting at once, each with its stack and most with a delivery slot.
func (s *Store) Record(id string, then func(error)) {
	s.mu.Lock()
	b := s.pendingLocked()
	if b != nil {
		b.records = append(b.records, record{id, then})
	}
	s.mu.Unlock()
	if b == nil {
		s.metrics.errors.WithLabelValues("record").Inc()
		then(ErrClosed)
	}
}

// batchesInFlight bounds the batches written at once. One at a time, the
// operations of a busy instance waited for the round trip of the batch
// before theirs as well as their own: on a loaded machine with 8,192
// deliveries in flight, over 5,000 delivered jobs at once were waiting to be
// recorded, each holding its goroutine. The operations of two batches
// commute (adds to sets; claims need no atomicity, see writeBatch).
const batchesInFlight = 4

// write makes each pending batch, Linger after its first operation, with up
// to batchesInFlight written at once, until Close; then it makes the last
// one and waits for them.
func (s *Store) write() {
	var writing sync.WaitGroup
	sem := make(chan struct{}, batchesInFlight)
	defer func() { writing.Wait(); close(s.done) }()
	linger := time.NewTimer(Linger)
	for stop := false; !stop; {
		select {
		case <-s.kick:
			linger.Reset(Linger)
			select {
			case <-linger.C:
			case <-s.quit:
				stop = true
			}
		case <-s.quit:
			stop = true
		}
		s.mu.Lock()
		b := s.pending
		s.pending = nil
		if stop {
			select { // a kick for the batch taken here must not outlive it
			case <-s.kick:
			default:
			}
		}
		s.mu.Unlock()
		if b != nil {
			sem <- struct{}{}
			writing.Go(func() { s.writeBatch(b); <-sem })
		}
	}
}

// writeBatch makes b, tells its records' callers and closes b.done. One
// pipelined round trip adds its records to the current delivered set, which
// expires a window after it ends, and looks for its claims' ids in the sets
// of the window; a second one sets the claims of the ids not found, unless
// another claim holds them. Check and set need not be atomic: both copies of an event claim,
// and a claim is kept after its attempt delivers, so a copy finds either
// the record or the other's claim.
func (s *Store) writeBatch(b *batch) {
	defer close(b.done)
	now := time.Now()
	start := s.bucket(now)
	expireAt := time.UnixMilli(start).Add(s.width + s.window + s.width)
	var members [shards][]any
	for _, r := range b.records {
		h, shard := hash(r.id)
		members[shard] = append(members[shard], h)
	}
	var writes []redis.Cmder
	seen := make([][]*redis.BoolCmd, len(b.claims))
	ctx, cancel := context.WithTimeout(s.abort, batchTimeout)
	defer cancel()
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for shard, m := range members {
			key := s.deliveredKey(start, byte(shard))
			for len(m) > 0 {
				n := min(len(m), maxBatch)
				writes = append(writes, p.SAdd(ctx, key, m[:n]...))
				m = m[n:]
			}
			if len(members[shard]) > 0 {
				writes = append(writes, p.PExpireAt(ctx, key, expireAt))
			}
		}
		for i, c := range b.claims {
			h, shard := hash(c.id)
			for _, k := range s.windowKeys(now, shard) {
				seen[i] = append(seen[i], p.SIsMember(ctx, k, h))
			}
		}
		return nil
	})
	var err error
	for _, w := range writes {
		if err = w.Err(); err != nil {
			s.metrics.errors.WithLabelValues("record").Add(float64(len(b.records)))
			err = fmt.Errorf("dedupe record of %d ids: %w", len(b.records), err)
			break
		}
	}
	for _, r := range b.records {
		r.then(err)
	}
	var claiming []*claimOp
	for i, c := range b.claims {
		switch {
		case slices.ContainsFunc(seen[i], func(c *redis.BoolCmd) bool { return c.Err() != nil }):
			c.state = Unknown
		case slices.ContainsFunc(seen[i], func(c *redis.BoolCmd) bool { return c.Val() }):
			c.state = AlreadyDelivered
		default:
			claiming = append(claiming, c)
		}
	}
	if len(claiming) == 0 {
		return
	}
	set := make([]*redis.BoolCmd, len(claiming))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range claiming {
			set[i] = c.lease.ObtainIn(ctx, p, c.ttl)
		}
		return nil
	})
	for i, c := range claiming {
		switch {
		case set[i].Err() != nil:
			c.state = Unknown
		case set[i].Val():
			c.state = Claimed
		default:
			c.state = InFlight
		}
	}
}
