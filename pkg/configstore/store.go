// Package configstore keeps webhook configs.
//
// The compacted topic feedback.configs (key "<imsOrg>/<sandboxId>") is the
// source of truth; the admin API writes it. Every feedbackd instance tails
// the topic into Redis, where a write only lands if its record offset is
// newer than the stored one, so instances that lag cannot undo each other.
// A marker key says Redis holds the whole topic: when Redis is flushed or
// restarts empty the marker is gone, lookups answer ErrNotLoaded instead of
// "no config", and the instance that notices replays the topic from the
// start. In front of Redis each instance keeps a small cache; its own tail
// of the topic invalidates entries as changes arrive, which is how a change
// made through one instance reaches the caches of all of them.
package configstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/lease"
	"github.com/feedbackd/feedbackd/pkg/secrets"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Errors of lookups and writes.
var (
	ErrNotFound  = errors.New("no webhook config")
	ErrNotLoaded = errors.New("webhook configs are not loaded in Redis yet")
	ErrExists    = errors.New("a webhook config already exists for this organisation and sandbox")
	ErrCorrupt   = errors.New("stored webhook config cannot be used")
	// ErrKeyMissing says a config's secrets were sealed with a key this
	// instance does not have (secrets.keys, secrets.key_file): an operator's
	// error, never the tenant's, so its events wait instead of failing.
	ErrKeyMissing = errors.New("stored webhook config's secrets were sealed with a key that is not configured")
)

// Options configure a Store.
type Options struct {
	Topic         string        // compacted configs topic
	KeyPrefix     string        // prefix of every Redis key, e.g. "feedbackd:"
	CacheTTL      time.Duration // how long a looked-up config is reused locally
	CacheSize     int           // local cache entries
	CheckInterval time.Duration // how often the Redis marker is checked
	ApplyTimeout  time.Duration // how long a write waits to be visible locally
	// Keyring encrypts the secret fields of stored configs. nil stores
	// them in the clear: for tests only (feedbackd refuses to start so).
	Keyring    *secrets.Keyring
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Topic == "" {
		o.Topic = "feedback.configs"
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "feedbackd:"
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100_000
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

// Store reads and writes webhook configs. It is safe for concurrent use.
// Run must be running for lookups to see changes and for writes to return.
type Store struct {
	opts     Options
	producer *kgo.Client
	kafka    []kgo.Opt // for the syncer's consumer clients
	rdb      redis.UniversalClient
	cache    *cache
	metrics  *Metrics
	applied  applied
	loaded   atomic.Bool
	missing  missingKeys

	flightsMu sync.Mutex
	flights   map[string]*flight // reads of Redis queued or in flight, by key
	queue     []*flight          // flights not yet taken by a batch
	reading   int                // goroutines reading batches (readQueued)
}

// New returns a Store. producer writes the configs topic and must allow
// producing to it; kafkaOpts (seeds, TLS, SASL: kafkaconn.Config.Opts) are used to build the
// consumer that tails it. New does no I/O.
func New(producer *kgo.Client, kafkaOpts []kgo.Opt, rdb redis.UniversalClient, opts Options) *Store {
	opts.defaults()
	return &Store{
		opts:     opts,
		producer: producer,
		kafka:    kafkaOpts,
		rdb:      rdb,
		cache:    newCache(opts.CacheSize, opts.CacheTTL),
		metrics:  newMetrics(opts.Registerer),
		applied:  applied{changed: make(chan struct{})},
		flights:  map[string]*flight{},
	}
}

func (s *Store) redisKey(key string) string { return s.opts.KeyPrefix + "cfg:" + key }
func (s *Store) markerKey() string          { return s.opts.KeyPrefix + "{configs}:loaded" }

// passKey is the sentinel of a sync pass; it shares the marker's Redis
// Cluster hash tag, {configs}, so that markScript can check one and set
// the other.
func (s *Store) passKey(pass string) string { return s.opts.KeyPrefix + "{configs}:pass:" + pass }
func (s *Store) lockKey(key string) string  { return s.opts.KeyPrefix + "lock:" + key }

// globEscape makes s match only itself in a Redis SCAN or KEYS pattern.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := range len(s) {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Lookup returns the delivery target of a tenant, from the local cache or
// Redis. It returns ErrNotFound when the tenant has no config, ErrNotLoaded
// while Redis does not hold the configs, ErrCorrupt for an unusable stored
// config, ErrKeyMissing for one whose secrets this instance cannot open, or
// a Redis error: only ErrNotFound and ErrCorrupt are final answers.
// Concurrent lookups of a tenant missing from the cache share one read, and
// reads of different tenants are batched (see maxReads).
func (s *Store) Lookup(ctx context.Context, org, sandboxID string) (*webhook.Target, error) {
	// A cache hit builds the key on the stack, so it does not allocate;
	// tenant ids are at most 128 characters (schema).
	var buf [2*128 + 1]byte
	k := appendKey(buf[:0], org, sandboxID)
	if t, ok := s.cache.get(k); ok {
		s.metrics.lookups.WithLabelValues("local", hitOrMiss(t)).Inc()
		if t == nil {
			return nil, ErrNotFound
		}
		return t, nil
	}
	s.metrics.lookups.WithLabelValues("local", "miss").Inc()
	return s.shared(ctx, string(k))
}

// Lookups that miss the local cache read Redis in batches: a miss joins
// the read of its key in flight, or queues; up to maxReads goroutines each
// take up to maxBatch queued keys and read them in one round trip (an
// HGET each and one EXISTS of the marker). A lone miss is read at once; a
// burst (a cold start, or the cache's entries expiring together with
// thousands of slots looking up different tenants) takes at most
// maxReads connections of the pool every part shares, not one per slot.
const (
	maxReads = 4
	maxBatch = 256
	// readTimeout bounds one batch: it serves many lookups, so no one
	// lookup's context can cut it short.
	readTimeout = 10 * time.Second
)

// flight is one read of a config from Redis that the lookups of its key
// wait for.
type flight struct {
	key  string
	gen  uint64 // the cache generation when it was queued
	done chan struct{}
	t    *webhook.Target
	err  error
}

// shared returns the answer of the read of key in flight, or queues one and
// waits for its answer. A read queued before a change was applied (an
// invalidation) is not joined: its answer may be stale. A lookup whose ctx
// ends stops waiting, with a Redis error (its event waits and looks up
// again); the read goes on for the others.
func (s *Store) shared(ctx context.Context, key string) (*webhook.Target, error) {
	gen := s.cache.generation()
	s.flightsMu.Lock()
	f, ok := s.flights[key]
	if !ok || f.gen != gen {
		f = &flight{key: key, gen: gen, done: make(chan struct{})}
		s.flights[key] = f
		s.queue = append(s.queue, f)
		if s.reading < maxReads {
			s.reading++
			go s.readQueued()
		}
	}
	s.flightsMu.Unlock()
	select {
	case <-f.done:
		return f.t, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("redis: %w", ctx.Err())
	}
}

// readQueued reads queued flights in batches until the queue is empty.
func (s *Store) readQueued() {
	for {
		s.flightsMu.Lock()
		n := min(len(s.queue), maxBatch)
		if n == 0 {
			s.queue = nil // let a burst's backing array go
			s.reading--
			s.flightsMu.Unlock()
			return
		}
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.flightsMu.Unlock()

		keys := make([]string, len(batch))
		for i, f := range batch {
			keys[i] = f.key
		}
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		stored, errs := s.readMany(ctx, keys)
		cancel()
		for i, f := range batch {
			f.t, f.err = s.settle(f, stored[i], errs[i])
		}
		s.flightsMu.Lock()
		for _, f := range batch {
			if s.flights[f.key] == f {
				delete(s.flights, f.key)
			}
		}
		s.flightsMu.Unlock()
		for _, f := range batch {
			close(f.done)
		}
	}
}

// settle turns what Redis answered for f's key into the lookup's answer,
// counts it and caches it unless the cache changed generation since f
// was queued.
func (s *Store) settle(f *flight, stored *webhook.Stored, err error) (*webhook.Target, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		s.metrics.lookups.WithLabelValues("redis", "miss").Inc()
		s.cache.put(f.key, nil, f.gen)
		s.missing.set(f.key, nil) // deleted: nothing left to open
		return nil, err
	case err != nil:
		s.metrics.lookups.WithLabelValues("redis", "error").Inc()
		return nil, err
	}
	s.metrics.lookups.WithLabelValues("redis", "hit").Inc()
	t, err := webhook.NewTarget(stored)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	s.cache.put(f.key, t, f.gen)
	return t, nil
}

// appendKey appends webhook.Key(org, sandboxID) to dst.
func appendKey(dst []byte, org, sandboxID string) []byte {
	dst = append(dst, org...)
	dst = append(dst, '/')
	return append(dst, sandboxID...)
}

func hitOrMiss(t *webhook.Target) string {
	if t == nil {
		return "miss" // a cached "no config"
	}
	return "hit"
}

// read fetches a stored config from Redis in one round trip together with
// the marker, so that a missing key is only reported as ErrNotFound when
// Redis is known to hold every config.
func (s *Store) read(ctx context.Context, key string) (*webhook.Stored, error) {
	stored, errs := s.readMany(ctx, []string{key})
	return stored[0], errs[0]
}

// readMany is read for several keys in one round trip (one EXISTS of the
// marker for all): the config or the error of each key, in order.
func (s *Store) readMany(ctx context.Context, keys []string) ([]*webhook.Stored, []error) {
	vals := make([]*redis.StringCmd, len(keys))
	var marker *redis.IntCmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			vals[i] = p.HGet(ctx, s.redisKey(k), "v")
		}
		marker = p.Exists(ctx, s.markerKey())
		return nil
	})
	stored, errs := make([]*webhook.Stored, len(keys)), make([]error, len(keys))
	for i, v := range vals {
		switch err := v.Err(); {
		case err != nil && !errors.Is(err, redis.Nil):
			errs[i] = fmt.Errorf("redis: %w", err)
		case v.Val() != "":
			stored[i], errs[i] = s.decode(keys[i], []byte(v.Val()))
		case marker.Err() != nil:
			errs[i] = fmt.Errorf("redis: %w", marker.Err())
		case marker.Val() == 0:
			errs[i] = ErrNotLoaded
		default:
			errs[i] = ErrNotFound
		}
	}
	return stored, errs
}

// Get returns a stored config, read from Redis (not the cache).
func (s *Store) Get(ctx context.Context, org, sandboxID string) (*webhook.Stored, error) {
	return s.read(ctx, webhook.Key(org, sandboxID))
}

// CheckSecrets opens the secrets of every stored config and returns an
// ErrKeyMissing error naming the key id if one was sealed with a key this
// instance does not have. Call it once the configs are loaded.
func (s *Store) CheckSecrets(ctx context.Context) error {
	_, err := s.List(ctx, "")
	return err
}

// SecretsErr says whether a config read lately had secrets this instance
// could not open for want of a key (its events wait), or is nil. Those
// configs are read again first, so one deleted or re-sealed since clears
// it. For readiness; it never names a tenant.
func (s *Store) SecretsErr(ctx context.Context) error {
	for _, key := range s.missing.keys() {
		if _, err := s.read(ctx, key); errors.Is(err, ErrNotFound) {
			s.missing.set(key, nil)
		}
	}
	return s.missing.err()
}

// List returns the stored configs of org, or of everyone when org is "",
// sorted by key.
func (s *Store) List(ctx context.Context, org string) ([]*webhook.Stored, error) {
	if n, err := s.rdb.Exists(ctx, s.markerKey()).Result(); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	} else if n == 0 {
		return nil, ErrNotLoaded
	}
	pattern := globEscape(s.redisKey("")) + "*"
	if org != "" {
		pattern = globEscape(s.redisKey(org+"/")) + "*"
	}
	keys, err := scanKeys(ctx, s.rdb, pattern)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	slices.Sort(keys)
	cmds := make([]*redis.StringCmd, len(keys))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGet(ctx, k, "v")
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis: %w", err)
	}
	out := make([]*webhook.Stored, 0, len(keys))
	for i, c := range cmds {
		if c.Val() == "" { // tombstone
			continue
		}
		st, err := s.decode(strings.TrimPrefix(keys[i], s.redisKey("")), []byte(c.Val()))
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Create stores a new config; ErrExists if the tenant already has one.
func (s *Store) Create(ctx context.Context, st *webhook.Stored) error {
	return s.withLock(ctx, st.Key(), func(ctx context.Context) error {
		switch _, err := s.read(ctx, st.Key()); {
		case err == nil:
			return ErrExists
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return s.write(ctx, st.Key(), st)
	})
}

// Update applies change to the stored config of a tenant and stores the
// result; ErrNotFound if there is none. Concurrent updates of one tenant,
// from any instance, are serialised by a Redis lock.
func (s *Store) Update(ctx context.Context, org, sandboxID string, change func(*webhook.Stored) error) (*webhook.Stored, error) {
	key := webhook.Key(org, sandboxID)
	var st *webhook.Stored
	err := s.withLock(ctx, key, func(ctx context.Context) error {
		var err error
		if st, err = s.read(ctx, key); err != nil {
			return err
		}
		if err := change(st); err != nil {
			return err
		}
		return s.write(ctx, key, st)
	})
	return st, err
}

// Delete removes a tenant's config; ErrNotFound if there is none.
func (s *Store) Delete(ctx context.Context, org, sandboxID string) error {
	key := webhook.Key(org, sandboxID)
	return s.withLock(ctx, key, func(ctx context.Context) error {
		if _, err := s.read(ctx, key); err != nil {
			return err
		}
		return s.write(ctx, key, nil)
	})
}

// write produces the config (nil: a tombstone) and waits until this
// instance has applied it, so that the caller reads its own write.
func (s *Store) write(ctx context.Context, key string, st *webhook.Stored) error {
	rec := &kgo.Record{Topic: s.opts.Topic, Key: []byte(key)}
	if st != nil {
		v, err := s.encode(key, st)
		if err != nil {
			return err
		}
		rec.Value = v
	}
	res, err := s.producer.ProduceSync(ctx, rec).First()
	if err != nil {
		return fmt.Errorf("write %s: %w", s.opts.Topic, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.opts.ApplyTimeout)
	defer cancel()
	if err := s.applied.wait(wctx, res.Partition, res.Offset); err != nil {
		// The change is durable in Kafka and will be applied; only our
		// read-your-write promise is late.
		s.opts.Logger.Warn("config change written but not yet applied locally", "key", key, "err", err)
	}
	return nil
}

// lockTTL bounds how long a crashed holder blocks a tenant's changes; the
// work under the lock is cut off well before it (lockWork).
const (
	lockTTL  = 30 * time.Second
	lockWork = 20 * time.Second
)

// withLock runs fn while holding the tenant's Redis lock, a lease, so that
// changes from any instance are serialised. fn's context ends before the
// lock expires, so two holders never overlap.
func (s *Store) withLock(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	lock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	wctx, cancel := context.WithTimeout(ctx, lockWork)
	defer cancel()
	return fn(wctx)
}

// lock takes the tenant's lock, waiting while another holds it, until ctx
// ends.
func (s *Store) lock(ctx context.Context, key string) (lease.Lease, error) {
	for {
		l, ok, err := lease.Obtain(ctx, s.rdb, s.lockKey(key), lockTTL)
		switch {
		case err != nil:
			return lease.Lease{}, fmt.Errorf("redis: %w", err)
		case ok:
			return l, nil
		case !backoff.Sleep(ctx, 25*time.Millisecond):
			return lease.Lease{}, ctx.Err()
		}
	}
}

// applied tracks, per partition of the configs topic, the next offset this
// instance has yet to apply.
type applied struct {
	mu      sync.Mutex
	next    map[int32]int64
	changed chan struct{}
}

func (a *applied) set(partition int32, next int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == nil {
		a.next = map[int32]int64{}
	}
	if next > a.next[partition] {
		a.next[partition] = next
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

func (a *applied) wait(ctx context.Context, partition int32, offset int64) error {
	for {
		a.mu.Lock()
		done, ch := a.next[partition] > offset, a.changed
		a.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Disable turns a tenant's config off, keeping it for inspection; its events
// are then dead-lettered as endpoint_disabled until it is re-enabled.
func (s *Store) Disable(ctx context.Context, org, sandboxID, reason string) error {
	_, err := s.Update(ctx, org, sandboxID, func(st *webhook.Stored) error {
		st.Enabled, st.DisabledReason, st.UpdatedAt = false, reason, time.Now().UTC()
		return nil
	})
	return err
}

// scanKeys returns the keys matching pattern. A Cluster's SCAN sees one
// node: there every master is scanned.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var keys []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return keys, iter.Err()
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, rdb)
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := scan(ctx, node)
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
}
