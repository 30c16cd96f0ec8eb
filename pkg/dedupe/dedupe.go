// Package dedupe remembers which events were delivered, in Redis, for a
// window, so that a record read again after a crash or a rebalance (its
// offset was not committed yet) is not sent a second time. Events are named
// by a key the caller chooses (feedbackd: tenant, input record timestamp
// and webhook-id).
//
// Delivered events are kept as 16-byte hashes of their keys in one Redis set
// per tenth of the window, <prefix>delivered:<start>+<width> (Unix
// milliseconds), which expires a window after it ends: recording a batch of
// deliveries is one SADD, and an event costs Redis about 60 bytes. A check
// looks at the sets of the last window, give or take a tenth (clocks of
// instances may differ). Claims are keys of their own, <prefix>claim:<key>.
//
// A record that may have been delivered already is claimed before its
// attempt: the claim says an attempt for the id is in flight, so that two
// copies of one event (a re-read input record and the retry record written
// before the crash) are not sent at the same time. A claim ends when the
// attempt is recorded as delivered, when it is released after a failed
// attempt, or when it expires (its holder crashed).
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Store checks and records delivered webhook ids. It is safe for
// concurrent use. Records are written in batches by one goroutine, which
// Close stops: it waits Linger after the first id of a batch for others to
// join, then writes them all in one pipelined round trip.
type Store struct {
	rdb     redis.Cmdable
	prefix  string
	window  time.Duration
	width   time.Duration // of a delivered set: a tenth of the window
	metrics *Metrics
	kick    chan struct{} // a batch is pending (capacity 1)
	quit    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	pending *batch // the ids waiting for the writer; nil if none
	closed  bool
}

// batch is ids written in one round trip; done is closed once they are,
// with err set if they are not.
type batch struct {
	ids  []string
	done chan struct{}
	err  error
}

// Linger is how long the writer waits for a batch to fill. Under load a
// round trip for every few ids costs Redis (and feedbackd) more than the
// ids themselves; the wait delays only the release of a delivered event's
// slot, not its delivery.
const Linger = time.Millisecond

// maxBatch bounds the ids written in one round trip.
const maxBatch = 512

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("dedupe store closed")

// claimScript returns "delivered" if one of the delivered sets KEYS[2..]
// holds the hash ARGV[3]; else it sets the claim KEYS[1] to the token
// ARGV[1] for ARGV[2] ms if it is not set, and returns "claimed", or the
// token it holds (another attempt's, "c:...").
var claimScript = redis.NewScript(`
for i = 2, #KEYS do
  if redis.call("SISMEMBER", KEYS[i], ARGV[3]) == 1 then return "delivered" end
end
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return "claimed" end
return redis.call("GET", KEYS[1]) or "claimed-expired"`)

// deliveredScript returns 1 if one of the sets KEYS holds the hash ARGV[1].
var deliveredScript = redis.NewScript(`
for i = 1, #KEYS do
  if redis.call("SISMEMBER", KEYS[i], ARGV[1]) == 1 then return 1 end
end
return 0`)

// releaseScript deletes KEYS[1] if it still holds the claim token ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// Claim is the answer to a claim.
type Claim struct {
	State State
	token string
}

// State says what a claim found.
type State int

const (
	Claimed   State = iota // the attempt may go; Release the claim unless it is recorded as delivered
	Delivered              // the id was delivered within the window: do not send it again
	InFlight               // another attempt for the id holds a claim: try again later
	Unknown                // Redis did not answer: the attempt goes ahead unclaimed (counted)
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
	go s.write()
	return s
}

// Close writes the ids recorded so far and stops the writer; later Records
// return ErrClosed. It must be called once.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
}

// bucket is the start of the delivered set that t falls in.
func (s *Store) bucket(t time.Time) int64 {
	w := s.width.Milliseconds()
	return t.UnixMilli() / w * w
}

func (s *Store) deliveredKey(start int64) string {
	return s.prefix + "delivered:" + strconv.FormatInt(start, 10) + "+" + strconv.FormatInt(s.width.Milliseconds(), 10)
}

// windowKeys are the delivered sets an id recorded within the window may be in,
// by any instance: from a window ago to now, and one more set on each side
// for instances whose clocks differ by up to a tenth of the window.
func (s *Store) windowKeys(now time.Time) []string {
	w := s.width.Milliseconds()
	first, last := s.bucket(now.Add(-s.window))-w, s.bucket(now)+w
	keys := make([]string, 0, (last-first)/w+2)
	for b := first; b <= last; b += w {
		keys = append(keys, s.deliveredKey(b))
	}
	return keys
}

// hash is what a delivered set holds for id: 16 bytes of its SHA-256.
func hash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return string(sum[:16])
}

func (s *Store) claimKey(id string) string { return s.prefix + "claim:" + id }

// Claim claims id for an attempt that lasts at most ttl, unless it was
// delivered within the window or another attempt holds it. On a Redis error
// the answer is Unknown, counted: the attempt should go ahead.
func (s *Store) Claim(ctx context.Context, id string, ttl time.Duration) Claim {
	token := "c:" + rand.Text()
	keys := append([]string{s.claimKey(id)}, s.windowKeys(time.Now())...)
	res, err := claimScript.Run(ctx, s.rdb, keys, token, ttl.Milliseconds(), hash(id)).Text()
	switch {
	case err != nil:
		s.metrics.errors.WithLabelValues("check").Inc()
		return Claim{State: Unknown}
	case res == "claimed":
		return Claim{State: Claimed, token: token}
	case res == "delivered":
		s.metrics.suppressed.Inc()
		return Claim{State: Delivered}
	case strings.HasPrefix(res, "c:"), res == "claimed-expired": // another attempt's claim: try later
		return Claim{State: InFlight}
	default: // a value feedbackd never writes: do not wait for it
		s.metrics.errors.WithLabelValues("check").Inc()
		return Claim{State: Unknown}
	}
}

// Delivered reports whether id was recorded as delivered within the
// window; false if Redis does not answer.
func (s *Store) Delivered(ctx context.Context, id string) bool {
	n, err := deliveredScript.Run(ctx, s.rdb, s.windowKeys(time.Now()), hash(id)).Int()
	return err == nil && n == 1
}

// Release ends a claim whose attempt did not deliver, so that the next
// attempt for the id need not wait for it to expire. Releasing anything but
// a Claimed claim, or a claim that expired and was taken by another attempt
// since, does nothing. It still works once ctx has ended (an attempt cut
// short by shutdown releases its claim), for up to 2 seconds.
func (s *Store) Release(ctx context.Context, id string, c Claim) {
	if c.State != Claimed {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := releaseScript.Run(ctx, s.rdb, []string{s.claimKey(id)}, c.token).Err(); err != nil {
		s.metrics.errors.WithLabelValues("release").Inc() // it expires by itself
	}
}

// Record remembers that id was delivered, for the window, and returns once
// Redis has it, ctx ended or the store is closed. The error is counted as
// well as returned; the caller need not act on it.
func (s *Store) Record(ctx context.Context, id string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.metrics.errors.WithLabelValues("record").Inc()
		return fmt.Errorf("dedupe record: %w", ErrClosed)
	}
	b := s.pending
	if b == nil {
		b = &batch{done: make(chan struct{})}
		s.pending = b
		s.kick <- struct{}{} // cannot block: only the first id of a batch sends
	}
	b.ids = append(b.ids, id)
	s.mu.Unlock()
	var err error
	select {
	case <-b.done:
		err = b.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.metrics.errors.WithLabelValues("record").Inc()
		return fmt.Errorf("dedupe record: %w", err)
	}
	return nil
}

// write writes each pending batch, Linger after its first id, until Close;
// then it writes the last one.
func (s *Store) write() {
	defer close(s.done)
	linger := time.NewTimer(Linger)
	var args []any
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
			args = s.writeBatch(b, args)
		}
	}
}

// writeBatch adds b's ids to the current delivered set, maxBatch per
// round trip, and closes b.done. The set expires a window after it ends.
func (s *Store) writeBatch(b *batch, args []any) []any {
	now := time.Now()
	start := s.bucket(now)
	key := s.deliveredKey(start)
	expireAt := time.UnixMilli(start).Add(s.width + s.window + s.width)
	for ids := b.ids; len(ids) > 0 && b.err == nil; {
		n := min(len(ids), maxBatch)
		args = args[:0]
		for _, id := range ids[:n] {
			args = append(args, hash(id))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, b.err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.SAdd(ctx, key, args...)
			p.PExpireAt(ctx, key, expireAt)
			return nil
		})
		cancel()
		ids = ids[n:]
	}
	close(b.done)
	return args
}
