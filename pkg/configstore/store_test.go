package configstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/topics"
	"github.com/feedbackd/feedbackd/pkg/webhook"
	"github.com/feedbackd/feedbackd/test/testenv"
)

type env struct {
	kafka *testenv.Kafka
	redis *testenv.Redis
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{kafka: testenv.StartKafka(t), redis: testenv.StartRedis(t)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.Seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := topics.Ensure(context.Background(), kadm.NewClient(cl), topics.Spec{Name: "feedback.configs", Partitions: 2, Configs: topics.Compacted()}); err != nil {
		t.Fatal(err)
	}
	return e
}

// instance starts one Store with its syncer, as a feedbackd instance would.
func (e *env) instance(t *testing.T, ttl time.Duration) *Store {
	t.Helper()
	return e.instanceOn(t, ttl, e.redis.Client)
}

// instanceOn is instance with its own Redis client.
func (e *env) instanceOn(t *testing.T, ttl time.Duration, rdb redis.UniversalClient) *Store {
	t.Helper()
	kopts := []kgo.Opt{kgo.SeedBrokers(e.kafka.Seeds...)}
	prod, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic("feedback.configs"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	s := New(prod, kopts, rdb, Options{CacheTTL: ttl, CheckInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, "configs loaded", 20*time.Second, s.Loaded)
	return s
}

func stored(t *testing.T, org, sb, url string) *webhook.Stored {
	secret, err := signature.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return &webhook.Stored{Config: webhook.Config{
		Org: org, Sandbox: webhook.Sandbox{ID: sb}, Name: "n", Channels: []string{"email"},
		URL: url, Auth: webhook.Auth{Type: webhook.AuthNone}, Campaigns: []string{"*"}, Enabled: true,
	}, Secrets: []webhook.Secret{{Value: secret}}}
}

func TestCreateUpdateDeleteAcrossInstances(t *testing.T) {
	e := newEnv(t)
	a := e.instance(t, time.Hour) // long TTL: only invalidation can refresh the caches
	b := e.instance(t, time.Hour)
	ctx := testenv.Context(t, 30*time.Second)

	if _, err := b.Lookup(ctx, "org1", "sb1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup before create: %v", err)
	}
	if err := a.Create(ctx, stored(t, "org1", "sb1", "https://one.example")); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, stored(t, "org1", "sb1", "https://two.example")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	// a reads its own write at once; b's cached "no config" is invalidated
	// by its own tail of the topic.
	if tg, err := a.Lookup(ctx, "org1", "sb1"); err != nil || tg.Config.URL != "https://one.example" {
		t.Fatalf("a lookup after create: %v %v", tg, err)
	}
	testenv.Eventually(t, "b sees the new config", 20*time.Second, func() bool {
		tg, err := b.Lookup(ctx, "org1", "sb1")
		return err == nil && tg.Config.URL == "https://one.example"
	})

	if _, err := b.Update(ctx, "org1", "sb1", func(s *webhook.Stored) error { s.URL = "https://edited.example"; return nil }); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "a sees the edit", 20*time.Second, func() bool {
		tg, err := a.Lookup(ctx, "org1", "sb1")
		return err == nil && tg.Config.URL == "https://edited.example"
	})

	list, err := a.List(ctx, "org1")
	if err != nil || len(list) != 1 || list[0].URL != "https://edited.example" {
		t.Fatalf("List = %v, %v", list, err)
	}

	if err := a.Delete(ctx, "org1", "sb1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "b sees the delete", 20*time.Second, func() bool {
		_, err := b.Lookup(ctx, "org1", "sb1")
		return errors.Is(err, ErrNotFound)
	})
	if err := a.Delete(ctx, "org1", "sb1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if list, _ := a.List(ctx, ""); len(list) != 0 {
		t.Fatalf("tombstone listed: %v", list)
	}
}

func TestRedisFlushIsRebuiltFromTopic(t *testing.T) {
	e := newEnv(t)
	s := e.instance(t, time.Nanosecond) // no caching: every lookup reads Redis
	ctx := testenv.Context(t, 30*time.Second)
	for _, sb := range []string{"sb1", "sb2", "sb3"} {
		if err := s.Create(ctx, stored(t, "org1", sb, "https://"+sb+".example")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "org1", "sb3"); err != nil {
		t.Fatal(err)
	}
	if err := e.redis.Client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Right after the flush a lookup must not claim "no config".
	if _, err := s.Lookup(ctx, "org1", "sb1"); errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup right after flush = %v, want ErrNotLoaded (or a rebuilt config)", err)
	}
	testenv.Eventually(t, "configs rebuilt", 20*time.Second, func() bool {
		tg, err := s.Lookup(ctx, "org1", "sb2")
		return err == nil && tg.Config.URL == "https://sb2.example"
	})
	// The rebuild writes the configs before it marks Redis loaded: until
	// then a missing config is "not loaded", never found.
	testenv.Eventually(t, "the deleted config reported missing", 20*time.Second, func() bool {
		_, err := s.Lookup(ctx, "org1", "sb3")
		if err == nil {
			t.Fatal("deleted config found after rebuild")
		}
		return errors.Is(err, ErrNotFound)
	})
}

func TestOlderOffsetNeverOverwrites(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t, 10*time.Second)
	key := []string{"test:cfg:o/s"}
	for _, step := range []struct {
		offset int64
		value  string
	}{{5, "new"}, {3, "old"}, {5, "same offset"}} {
		if err := applyScript.Run(ctx, e.redis.Client, key, step.offset, step.value).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if v := e.redis.Client.HGet(ctx, key[0], "v").Val(); v != "new" {
		t.Fatalf("value = %q, want the newest write", v)
	}
}

// A Redis restart that restores an older snapshot keeps the marker but
// lacks later changes: the restart (a new run_id) triggers a rebuild.
func TestRedisRestoredFromOlderSnapshotIsRebuilt(t *testing.T) {
	e := newEnv(t)
	s := e.instance(t, time.Nanosecond)
	ctx := testenv.Context(t, 60*time.Second)
	if err := s.Create(ctx, stored(t, "org1", "old", "https://old.example")); err != nil {
		t.Fatal(err)
	}
	if err := e.redis.Client.Save(ctx).Err(); err != nil { // snapshot: marker + "old"
		t.Fatal(err)
	}
	if err := s.Create(ctx, stored(t, "org1", "new", "https://new.example")); err != nil {
		t.Fatal(err)
	}
	e.redis.Kill()
	e.redis.Restart(t) // loads the snapshot: "new" is missing, the marker is not
	testenv.Eventually(t, "the config written after the snapshot", 20*time.Second, func() bool {
		tg, err := s.Lookup(ctx, "org1", "new")
		return err == nil && tg.Config.URL == "https://new.example"
	})
}

// The marker is set only if the pass's sentinel survived: a flush between
// the start of a pass and its end must not leave a marker over a Redis that
// lacks what the pass applied before the flush.
func TestMarkerNeedsTheSentinel(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t, 10*time.Second)
	keys := []string{"t:{configs}:pass:x", "t:{configs}:loaded"}
	if err := e.redis.Client.Set(ctx, keys[0], "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	e.redis.Client.FlushAll(ctx)
	if ok, err := markScript.Run(ctx, e.redis.Client, keys, "now").Int(); err != nil || ok != 0 {
		t.Fatalf("mark after a flush = %d, %v; want 0", ok, err)
	}
	if e.redis.Client.Exists(ctx, keys[1]).Val() != 0 {
		t.Fatal("marker set although the pass lost data")
	}
	e.redis.Client.Set(ctx, keys[0], "1", time.Minute)
	if ok, _ := markScript.Run(ctx, e.redis.Client, keys, "now").Int(); ok != 1 || e.redis.Client.Exists(ctx, keys[1]).Val() != 1 {
		t.Fatal("marker not set after a clean pass")
	}
}

// Loading must finish even when retention or compaction removed the last
// records of a partition (its end offset then points past any record).
func TestLoadsWhenPartitionTailIsGone(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.Seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "feedback.configs", Partition: 1, Key: []byte(fmt.Sprintf("org/%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	ends, _ := adm.ListEndOffsets(ctx, "feedback.configs")
	resp, err := adm.DeleteRecords(ctx, ends.Offsets())
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	starts, _ := adm.ListStartOffsets(ctx, "feedback.configs")
	if st, _ := starts.Lookup("feedback.configs", 1); st.Offset != 5 {
		t.Fatalf("partition 1 starts at %d after deleting its records, want 5 (empty)", st.Offset)
	}
	e.instance(t, time.Second) // waits for Loaded
}

// An organisation given to List is matched as itself: glob characters in
// it (which valid ids never hold) match nothing else.
func TestListMatchesTheOrganisationOnly(t *testing.T) {
	e := newEnv(t)
	s := e.instance(t, time.Hour)
	ctx := testenv.Context(t, 30*time.Second)
	for _, org := range []string{"A", "B", "org1"} {
		if err := s.Create(ctx, stored(t, org, "sb1", "https://"+org+".example")); err != nil {
			t.Fatal(err)
		}
	}
	for _, org := range []string{"*", "?", "[AB]", "[B]", "org\\1", "o*", "A/*"} {
		if list, err := s.List(ctx, org); err != nil || len(list) != 0 {
			t.Errorf("List(%q) = %d configs, %v; want none", org, len(list), err)
		}
	}
	if list, err := s.List(ctx, "B"); err != nil || len(list) != 1 || list[0].Org != "B" {
		t.Errorf("List(B) = %v, %v", list, err)
	}
}

// TestChangesWaitForTheTenantLock holds a tenant's lock as another instance
// would: a change waits for it, leaves it alone if its context ends first,
// and frees it when done.
func TestChangesWaitForTheTenantLock(t *testing.T) {
	e := newEnv(t)
	s := e.instance(t, time.Minute)
	ctx := testenv.Context(t, 30*time.Second)
	if err := s.Create(ctx, stored(t, "org1", "sb1", "https://one.example")); err != nil {
		t.Fatal(err)
	}
	rdb, lock := e.redis.Client, "feedbackd:lock:org1/sb1"
	if n := rdb.Exists(ctx, lock).Val(); n != 0 {
		t.Fatal("Create left its lock")
	}
	edit := func(ctx context.Context) error {
		_, err := s.Update(ctx, "org1", "sb1", func(st *webhook.Stored) error { st.URL = "https://edited.example"; return nil })
		return err
	}

	rdb.Set(ctx, lock, "another instance", time.Minute)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := edit(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("change while another holds the lock: %v, want it to wait until its context ends", err)
	}
	if got := rdb.Get(ctx, lock).Val(); got != "another instance" {
		t.Fatalf("the other's lock holds %q after the change gave up", got)
	}

	rdb.PExpire(ctx, lock, 200*time.Millisecond)
	if err := edit(ctx); err != nil {
		t.Fatalf("change once the other's lock expired: %v", err)
	}
	if n := rdb.Exists(ctx, lock).Val(); n != 0 {
		t.Fatal("Update left its lock")
	}
}

// Lookups of one tenant missing from the cache, made while Redis does not
// answer, share one read.
func TestConcurrentMissesShareOneRead(t *testing.T) {
	e := newEnv(t)
	s := e.instance(t, time.Hour)
	ctx := testenv.Context(t, 30*time.Second)
	if err := s.Create(ctx, stored(t, "org1", "sb1", "https://one.example")); err != nil {
		t.Fatal(err)
	}
	s.cache.clear()
	reads := func() float64 {
		var n float64
		for _, r := range []string{"hit", "miss", "error"} {
			var m dto.Metric
			if err := s.metrics.lookups.WithLabelValues("redis", r).Write(&m); err != nil {
				t.Fatal(err)
			}
			n += m.GetCounter().GetValue()
		}
		return n
	}
	before := reads()

	// Redis holds every read until the lookups have all started.
	if err := e.redis.Client.Do(ctx, "CLIENT", "PAUSE", 1000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			tg, err := s.Lookup(ctx, "org1", "sb1")
			if err == nil && tg.Config.URL != "https://one.example" {
				err = fmt.Errorf("target %s", tg.Config.URL)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := reads() - before; got != 1 {
		t.Fatalf("%d concurrent lookups made %v reads of Redis, want 1", n, got)
	}
}

// Lookups of many tenants missing from the cache, made while Redis does not
// answer, are read in a few batches, not a round trip each.
func TestConcurrentMissesAreBatched(t *testing.T) {
	e := newEnv(t)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { rdb.Close() })
	var reads atomic.Int64 // pipelines of config reads
	rdb.AddHook(pipelineCounter{func(cmds []redis.Cmder) {
		if len(cmds) > 0 && cmds[0].Name() == "hget" {
			reads.Add(1)
		}
	}})
	s := e.instanceOn(t, time.Hour, rdb)
	ctx := testenv.Context(t, 60*time.Second)
	const n = 100
	for i := range n {
		if err := s.Create(ctx, stored(t, "org", fmt.Sprint("sb", i), fmt.Sprintf("https://%d.example", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.cache.clear()
	reads.Store(0)

	if err := e.redis.Client.Do(ctx, "CLIENT", "PAUSE", 1000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			tg, err := s.Lookup(ctx, "org", fmt.Sprint("sb", i))
			if want := fmt.Sprintf("https://%d.example", i); err == nil && tg.Config.URL != want {
				err = fmt.Errorf("sb%d: target %s, want %s", i, tg.Config.URL, want)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := reads.Load(); got < 1 || got > 2*maxReads {
		t.Fatalf("%d lookups of different tenants took %d round trips, want 1 to %d", n, got, 2*maxReads)
	}
	if _, err := s.Lookup(ctx, "org", "none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a tenant without a config: %v", err)
	}
}

// pipelineCounter is a go-redis hook calling fn with every pipeline.
type pipelineCounter struct{ fn func([]redis.Cmder) }

func (pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.fn(cmds)
		return next(ctx, cmds)
	}
}
