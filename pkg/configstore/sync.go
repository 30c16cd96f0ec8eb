package configstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/topics"
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

// markScript sets the "loaded" marker (KEYS[2]) only if this pass's
// sentinel (KEYS[1]), written before its first record was applied, is still
// there: if Redis lost data during the pass, what was applied before the
// loss is gone too and the pass must start again.
var markScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("SET", KEYS[2], ARGV[1])
redis.call("DEL", KEYS[1])
return 1`)

// errRedisLost ends a sync pass when Redis no longer holds the configs.
var errRedisLost = errors.New("redis lost the webhook configs (flushed, restarted empty or restored from an older snapshot)")

// Run tails the configs topic into Redis until ctx ends, replaying it from
// the start whenever Redis loses it. It returns ctx's error.
func (s *Store) Run(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for {
		err := s.syncPass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errRedisLost) {
			s.opts.Logger.Warn("rebuilding Redis from the configs topic", "topic", s.opts.Topic, "reason", err)
			s.metrics.rebuilds.Inc()
			wait = 100 * time.Millisecond
			continue
		}
		s.opts.Logger.Error("config sync failed; retrying", "err", err, "in", wait)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, 10*time.Second)
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
		kgo.RecordPartitioner(kgo.ManualPartitioner()), // barriers go to every partition
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()

	pass := rand.Text()
	barrier := barrierPrefix + pass
	sentinel := s.passKey(pass)
	if err := s.rdb.Set(ctx, sentinel, "1", 24*time.Hour).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	runID, err := s.redisRunID(ctx) // "" when the server does not say
	if err != nil {
		return err
	}
	behind, err := topics.WriteBarriers(ctx, cl, s.opts.Topic, barrier)
	if err != nil {
		return err
	}

	caughtUp := false
	nextCheck := time.Now().Add(s.opts.CheckInterval)
	for {
		if caughtUp && time.Now().After(nextCheck) {
			nextCheck = time.Now().Add(s.opts.CheckInterval)
			if err := s.checkRedis(ctx, runID); err != nil {
				s.loaded.Store(false)
				if errors.Is(err, errRedisLost) {
					s.cache.clear()
				}
				return err
			}
			s.loaded.Store(true)
		}
		if !caughtUp && len(behind) == 0 {
			ok, err := markScript.Run(ctx, s.rdb, []string{sentinel, s.markerKey()}, time.Now().UTC().Format(time.RFC3339)).Int()
			if err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			if ok == 0 {
				return errRedisLost
			}
			if err := s.checkRedis(ctx, runID); err != nil {
				return err
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
			switch {
			case aerr != nil:
			case strings.HasPrefix(string(r.Key), barrierPrefix): // a pass marker, not a config
				if string(r.Key) == barrier {
					delete(behind, r.Partition)
				}
			default:
				aerr = s.apply(ctx, r)
			}
		})
		if aerr != nil {
			return aerr
		}
	}
}

// barrierPrefix starts the keys of pass markers; no config key can start
// with '!' (organisation ids cannot hold one).
const barrierPrefix = "!sync-barrier/"

// checkRedis reports errRedisLost if the marker is gone or Redis restarted
// (a restart may restore an older snapshot that lacks recent changes).
func (s *Store) checkRedis(ctx context.Context, runID string) error {
	n, err := s.rdb.Exists(ctx, s.markerKey()).Result()
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	id, err := s.redisRunID(ctx)
	if err != nil {
		return err
	}
	if n == 0 || id != runID {
		return errRedisLost
	}
	return nil
}

// redisRunID is the server's run_id, which changes on every restart, or ""
// if the server does not report one (miniredis). Behind Sentinel it is the
// current master's: a failover, which may lose the writes the replica had
// not received, changes it. In a Cluster it is the sorted run_ids of all
// masters: a restart or failover of any of them, or a change of the
// masters, changes it.
func (s *Store) redisRunID(ctx context.Context) (string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return runID(ctx, s.rdb)
	}
	var mu sync.Mutex
	var ids []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		id, err := runID(ctx, node)
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return err
	})
	if err != nil {
		return "", err
	}
	slices.Sort(ids)
	return strings.Join(ids, ","), nil
}

func runID(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	var answered redis.Error
	if errors.As(err, &answered) { // the server refused: it has no run_id to give
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redis: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// apply writes one record to Redis, retrying until it lands or ctx ends:
// a record cannot be skipped.
func (s *Store) apply(ctx context.Context, r *kgo.Record) error {
	key := string(r.Key)
	wait := 50 * time.Millisecond
	for {
		err := applyScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, r.Offset, string(r.Value)).Err()
		if err == nil || errors.Is(err, redis.Nil) {
			break
		}
		s.loaded.Store(false)
		s.opts.Logger.Warn("cannot apply config change to Redis; retrying", "key", key, "err", err)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
	s.cache.invalidate(key)
	s.applied.set(r.Partition, r.Offset+1)
	s.metrics.applied.Inc()
	return nil
}
