package configstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// applyScript writes a config (ARGV[2], "" for a deletion) if its offset
// (ARGV[1]) is newer than the stored one. Deletions stay as tombstones so a
// lagging instance cannot bring a deleted config back; they expire after a
// week, long after any instance could lag that far.
var applyScript = redis.NewScript(`
local cur = redis.call("HGET", KEYS[1], "o")
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call("HSET", KEYS[1], "o", ARGV[1], "v", ARGV[2])
if ARGV[2] == "" then redis.call("EXPIRE", KEYS[1], 604800) else redis.call("PERSIST", KEYS[1]) end
return 1`)

// errRedisLost ends a sync pass when Redis no longer holds the configs.
var errRedisLost = errors.New("redis lost the webhook configs (flushed or restarted empty)")

// Run tails the configs topic into Redis until ctx ends, replaying it from
// the start whenever Redis loses it. It returns ctx's error.
func (s *Store) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := s.syncPass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errRedisLost) {
			s.opts.Logger.Warn("rebuilding Redis from the configs topic", "topic", s.opts.Topic, "reason", err)
			s.metrics.rebuilds.Inc()
			backoff = 100 * time.Millisecond
			continue
		}
		s.opts.Logger.Error("config sync failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// Loaded reports whether this instance has applied the whole configs topic
// to Redis at least once since start, and Redis still holds it.
func (s *Store) Loaded() bool { return s.loaded.Load() }

// syncPass consumes the topic from the start: it applies every record, sets
// the marker once caught up, then keeps tailing until Redis loses the
// marker (errRedisLost), ctx ends, or Kafka fails.
func (s *Store) syncPass(ctx context.Context) error {
	cl, err := kgo.NewClient(append(s.kafka,
		kgo.ConsumeTopics(s.opts.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.opts.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", s.opts.Topic, err)
	}
	behind := map[int32]int64{} // partition -> end offset still to reach
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			behind[o.Partition] = o.Offset
		}
	})

	caughtUp := false
	nextCheck := time.Now().Add(s.opts.CheckInterval)
	for {
		if caughtUp && time.Now().After(nextCheck) {
			nextCheck = time.Now().Add(s.opts.CheckInterval)
			n, err := s.rdb.Exists(ctx, s.markerKey()).Result()
			if err != nil {
				s.loaded.Store(false)
				return fmt.Errorf("redis: %w", err)
			}
			if n == 0 {
				s.loaded.Store(false)
				s.cache.clear()
				return errRedisLost
			}
			s.loaded.Store(true)
		}
		if !caughtUp && len(behind) == 0 {
			if err := s.rdb.Set(ctx, s.markerKey(), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			caughtUp = true
			s.loaded.Store(true)
			s.opts.Logger.Info("webhook configs loaded", "topic", s.opts.Topic)
		}

		pctx, cancel := context.WithTimeout(ctx, s.opts.CheckInterval)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("consume %s: %w", s.opts.Topic, ferr)
		}
		var aerr error
		fetches.EachRecord(func(r *kgo.Record) {
			if aerr != nil {
				return
			}
			if aerr = s.apply(ctx, r); aerr != nil {
				return
			}
			if end, ok := behind[r.Partition]; ok && r.Offset+1 >= end {
				delete(behind, r.Partition)
			}
		})
		if aerr != nil {
			return aerr
		}
	}
}

// apply writes one record to Redis, retrying until it lands or ctx ends:
// a record cannot be skipped.
func (s *Store) apply(ctx context.Context, r *kgo.Record) error {
	key := string(r.Key)
	backoff := 50 * time.Millisecond
	for {
		err := applyScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, r.Offset, string(r.Value)).Err()
		if err == nil || errors.Is(err, redis.Nil) {
			break
		}
		s.loaded.Store(false)
		s.opts.Logger.Warn("cannot apply config change to Redis; retrying", "key", key, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	s.cache.invalidate(key)
	s.applied.set(r.Partition, r.Offset+1)
	s.metrics.applied.Inc()
	return nil
}
