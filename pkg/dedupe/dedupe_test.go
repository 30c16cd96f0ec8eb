package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestRememberedForTheWindow(t *testing.T) {
	r := testenv.StartRedis(t)
	reg := prometheus.NewRegistry()
	const window = time.Second
	s := New(r.Client, "t:", window, reg)
	t.Cleanup(s.Close)
	ctx := t.Context()

	claim := func(id string) State { return s.Claim(ctx, id, time.Minute).State }
	c := s.Claim(ctx, "msg-1", time.Minute)
	if c.State != Claimed {
		t.Fatalf("first claim of an id: %v, want Claimed", c.State)
	}
	if got := claim("msg-1"); got != InFlight {
		t.Fatalf("second claim while the first is held: %v, want InFlight", got)
	}
	if err := recordAndWait(s, "msg-1"); err != nil {
		t.Fatal(err)
	}
	recorded := time.Now()
	if got := claim("msg-1"); got != AlreadyDelivered {
		t.Fatalf("claim of a recorded id: %v, want AlreadyDelivered", got)
	}
	if !s.Delivered(ctx, "msg-1") || s.Delivered(ctx, "msg-2") {
		t.Fatal("Delivered does not tell a recorded id from an unknown one")
	}
	s.Release(ctx, "msg-1", c) // the claim ends; the delivery is still remembered
	if got := claim("msg-1"); got != AlreadyDelivered {
		t.Fatalf("after releasing a recorded claim: %v, want AlreadyDelivered", got)
	}
	if got := claim("msg-2"); got != Claimed {
		t.Fatalf("another id: %v, want Claimed", got)
	}
	if got := value(t, s.metrics.suppressed); got != 2 {
		t.Fatalf("suppressed = %v, want 2", got)
	}
	// One set holds the batch: a 16-byte hash per id, expiring within a
	// window and two tenths of it.
	keys, err := r.Client.Keys(ctx, "t:delivered:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("delivered sets %v (%v), want 1", keys, err)
	}
	members, _ := r.Client.SMembers(ctx, keys[0]).Result()
	if len(members) != 1 || len(members[0]) != 16 {
		t.Fatalf("set members %q, want one 16-byte hash", members)
	}
	if ttl, err := r.Client.PTTL(ctx, keys[0]).Result(); err != nil || ttl <= 0 || ttl > window+window/5 {
		t.Fatalf("set TTL = %v (%v), want within %v", ttl, err, window+window/5)
	}

	// Still remembered within the window; forgotten after it.
	time.Sleep(time.Until(recorded.Add(window * 8 / 10)))
	if !s.Delivered(ctx, "msg-1") {
		t.Fatal("forgotten within the window")
	}
	time.Sleep(time.Until(recorded.Add(window + window*3/10)))
	if got := claim("msg-1"); got != Claimed {
		t.Fatalf("an id after its window: %v, want Claimed", got)
	}
	if n, _ := r.Client.Exists(ctx, keys[0]).Result(); n != 0 {
		t.Fatal("the delivered set outlived its window")
	}
}

func TestRedisDownNeverHoldsAnEventBack(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	t.Cleanup(s.Close)
	ctx := t.Context()
	if err := recordAndWait(s, "msg-1"); err != nil {
		t.Fatal(err)
	}
	r.Kill()

	if got := s.Claim(ctx, "msg-1", time.Minute).State; got != Unknown {
		t.Fatalf("claim with Redis down: %v, want Unknown (the attempt goes ahead)", got)
	}
	if err := recordAndWait(s, "msg-2"); err == nil {
		t.Fatal("Record with Redis down returned no error")
	}

	// The records of a batch share one error, which says how many they
	// are: the pipeline logs it once.
	answers := make(chan error, 3)
	for _, id := range []string{"msg-3", "msg-4", "msg-5"} {
		s.Record(id, func(err error) { answers <- err })
	}
	told := map[error]int{}
	for range 3 {
		err := <-answers
		if err == nil {
			t.Fatal("Record with Redis down returned no error")
		}
		told[err]++
	}
	for err, n := range told {
		if want := fmt.Sprintf("dedupe record of %d ids", n); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("told %d records %q, want it to start with %q", n, err, want)
		}
	}
	for op, want := range map[string]float64{"check": 1, "record": 4} {
		if got := value(t, s.metrics.errors.WithLabelValues(op)); got != want {
			t.Errorf("errors{op=%q} = %v, want %v", op, got, want)
		}
	}
}

// A shutdown with Redis hung does not wait out every batch's timeout:
// once closeGrace is past, the batch still waiting for one of the four in
// flight is cut short (context.Canceled), not sent to wait its own.
func TestCloseCutsShortTheBatchesWaitingOnAHungRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	if err := recordAndWait(s, "warm"); err != nil {
		t.Fatal(err)
	}
	r.Hang(t)
	answers := make(chan error, batchesInFlight+1)
	for i := range batchesInFlight + 1 {
		s.Record("hung-"+strconv.Itoa(i), func(err error) { answers <- err })
		time.Sleep(20 * Linger) // a batch each
	}
	s.Close()
	canceled := 0
	for range batchesInFlight + 1 {
		err := <-answers
		if err == nil {
			t.Fatal("a record with Redis hung reported no error")
		}
		if errors.Is(err, context.Canceled) {
			canceled++
		}
	}
	if canceled == 0 {
		t.Fatal("no batch was cut short at Close: each waited for its own timeout")
	}
}

// recordAndWait records id and waits for the answer.
func recordAndWait(s *Store, id string) error {
	answer := make(chan error, 1)
	s.Record(id, func(err error) { answer <- err })
	return <-answer
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Concurrent records are written in batches, each one acknowledged only
// once Redis has it; after Close, Record reports ErrClosed at once.
func TestConcurrentRecordsAndClose(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	ctx := t.Context()
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := recordAndWait(s, "id-"+strconv.Itoa(i)); err != nil {
				t.Errorf("record %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	keys, err := r.Client.Keys(ctx, "t:delivered:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var recorded int64
	for _, k := range keys {
		recorded += r.Client.SCard(ctx, k).Val()
	}
	if recorded != n {
		t.Fatalf("%d ids in the delivered sets %v, want %d", recorded, keys, n)
	}
	for i := range n {
		if !s.Delivered(ctx, "id-"+strconv.Itoa(i)) {
			t.Fatalf("id-%d not delivered", i)
		}
	}
	s.Close()
	if err := recordAndWait(s, "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close = %v, want ErrClosed", err)
	}
}

// A failed attempt releases its claim, so the next attempt goes at once; a
// claim whose holder crashed expires; a release never drops another's claim.
func TestClaimReleaseAndExpiry(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	t.Cleanup(s.Close)
	ctx := t.Context()

	first := s.Claim(ctx, "a", time.Minute)
	s.Release(ctx, "a", first)
	second := s.Claim(ctx, "a", time.Minute)
	if second.State != Claimed {
		t.Fatalf("claim after a release: %v, want Claimed", second.State)
	}
	s.Release(ctx, "a", first) // stale: must not drop the second claim
	if got := s.Claim(ctx, "a", time.Minute).State; got != InFlight {
		t.Fatalf("a stale release dropped the current claim: %v, want InFlight", got)
	}

	if got := s.Claim(ctx, "b", 50*time.Millisecond).State; got != Claimed {
		t.Fatalf("claim b: %v", got)
	}
	time.Sleep(100 * time.Millisecond) // its holder crashed
	if got := s.Claim(ctx, "b", time.Minute).State; got != Claimed {
		t.Fatalf("claim after the holder's claim expired: %v, want Claimed", got)
	}
}

// Claims made at once are batched: of those for one id exactly one gets
// it; each of the others' ids is claimed; an id recorded in the same batch
// is delivered.
func TestConcurrentClaims(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(r.Client, "t:", time.Minute, nil)
	t.Cleanup(s.Close)
	ctx := t.Context()
	if err := recordAndWait(s, "done"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var mu sync.Mutex
	got := map[string]map[State]int{}
	var wg sync.WaitGroup
	for i := range n {
		for _, id := range []string{"same", "own-" + strconv.Itoa(i), "done"} {
			wg.Go(func() {
				st := s.Claim(ctx, id, time.Minute).State
				mu.Lock()
				defer mu.Unlock()
				if got[id] == nil {
					got[id] = map[State]int{}
				}
				got[id][st]++
			})
		}
	}
	wg.Wait()
	if g := got["same"]; g[Claimed] != 1 || g[InFlight] != n-1 {
		t.Errorf("claims of one id: %v, want 1 Claimed and %d InFlight", g, n-1)
	}
	if g := got["done"]; g[AlreadyDelivered] != n {
		t.Errorf("claims of a recorded id: %v, want %d AlreadyDelivered", g, n)
	}
	for i := range n {
		if g := got["own-"+strconv.Itoa(i)]; g[Claimed] != 1 {
			t.Errorf("claim of own-%d: %v, want Claimed", i, g)
		}
	}
}
