package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestLease(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client
	const ttl = time.Minute
	cases := []struct {
		name string
		// before runs after the lease on "k" was obtained; it may take it
		// away or hand it to another holder.
		before  func(t *testing.T, l Lease)
		refresh bool // Refresh's answer, and whether it extended the TTL
		others  bool // another holder has "k" after before: Release keeps it
	}{
		{
			name:    "held",
			before:  func(*testing.T, Lease) {},
			refresh: true,
		},
		{
			name: "expired",
			before: func(t *testing.T, l Lease) {
				rdb.PExpire(t.Context(), l.Key(), time.Millisecond)
				testenv.Eventually(t, "the lease expires", 5*time.Second, func() bool {
					return rdb.Exists(t.Context(), l.Key()).Val() == 0
				})
			},
		},
		{
			name: "taken by another after it expired",
			before: func(t *testing.T, l Lease) {
				rdb.Del(t.Context(), l.Key())
				other, ok, err := Obtain(t.Context(), rdb, l.Key(), ttl)
				if err != nil || !ok {
					t.Fatalf("other Obtain: %v, %v", ok, err)
				}
				if other.Token() == l.Token() {
					t.Fatal("two holdings share a token")
				}
			},
			others: true,
		},
		{
			name: "released already",
			before: func(t *testing.T, l Lease) {
				if err := l.Release(t.Context()); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			rdb.Del(ctx, "k")
			l, ok, err := Obtain(ctx, rdb, "k", ttl)
			if err != nil || !ok {
				t.Fatalf("Obtain of a free key: %v, %v", ok, err)
			}
			if l.Key() != "k" || l.Token() == "" || rdb.Get(ctx, "k").Val() != l.Token() {
				t.Fatalf("Obtain: key %q token %q, Redis holds %q", l.Key(), l.Token(), rdb.Get(ctx, "k").Val())
			}
			if _, ok, err := Obtain(ctx, rdb, "k", ttl); err != nil || ok {
				t.Fatalf("second Obtain while held: %v, %v; want false", ok, err)
			}
			c.before(t, l)
			other := rdb.Get(ctx, "k").Val() // another holder's token, if any
			ok, err = l.Refresh(ctx, 2*ttl)
			if err != nil || ok != c.refresh {
				t.Fatalf("Refresh: %v, %v; want %v", ok, err, c.refresh)
			}
			if got := rdb.PTTL(ctx, "k").Val(); c.refresh != (got > ttl) {
				t.Fatalf("TTL after Refresh: %v", got)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := rdb.Get(ctx, "k").Result()
			switch {
			case !c.others && !errors.Is(err, redis.Nil):
				t.Fatalf("after Release the key holds %q (%v), want nothing", got, err)
			case c.others && (got == "" || got != other):
				t.Fatalf("Release deleted or changed another holder's lease: %q, want %q", got, other)
			}
		})
	}
}

func TestObtainAfterRelease(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	ctx := t.Context()
	l, ok, err := Obtain(ctx, rdb, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Obtain: %v, %v", ok, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := Obtain(ctx, rdb, "k", time.Minute); err != nil || !ok {
		t.Fatalf("Obtain after Release: %v, %v; want true", ok, err)
	}
}

func TestObtainExpires(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	ctx := t.Context()
	if _, ok, err := Obtain(ctx, rdb, "k", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("Obtain: %v, %v", ok, err)
	}
	testenv.Eventually(t, "the lease is free after its TTL", 5*time.Second, func() bool {
		_, ok, err := Obtain(ctx, rdb, "k", time.Minute)
		return err == nil && ok
	})
}

func TestObtainIn(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	ctx := t.Context()
	mine, theirs := New(rdb, "a", "t1"), New(rdb, "b", "t2")
	rdb.Set(ctx, "b", "someone", time.Minute)
	var a, b *redis.BoolCmd
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		a, b = mine.ObtainIn(ctx, p, time.Minute), theirs.ObtainIn(ctx, p, time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !a.Val() || b.Val() {
		t.Fatalf("ObtainIn of a free and a taken key: %v, %v; want true, false", a.Val(), b.Val())
	}
	if got := rdb.Get(ctx, "a").Val(); got != "t1" {
		t.Fatalf("key holds %q, want the token t1", got)
	}
	if ok, err := mine.Refresh(ctx, time.Minute); err != nil || !ok {
		t.Fatalf("Refresh of a lease obtained in a pipeline: %v, %v", ok, err)
	}
}

func TestContextEnded(t *testing.T) {
	rdb := testenv.StartRedis(t).Client
	l, ok, err := Obtain(t.Context(), rdb, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Obtain: %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok, err := Obtain(ctx, rdb, "k2", time.Minute); !errors.Is(err, context.Canceled) || ok {
		t.Fatalf("Obtain with an ended context: %v, %v; want context.Canceled", ok, err)
	}
	if ok, err := l.Refresh(ctx, time.Minute); !errors.Is(err, context.Canceled) || ok {
		t.Fatalf("Refresh with an ended context: %v, %v; want context.Canceled", ok, err)
	}
	if err := l.Release(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Release with an ended context: %v; want context.Canceled", err)
	}
	if rdb.Get(t.Context(), "k").Val() != l.Token() {
		t.Fatal("the lease changed although no command was sent")
	}
	if rdb.Exists(t.Context(), "k2").Val() != 0 {
		t.Fatal("Obtain with an ended context set the key")
	}
	if err := l.Release(context.WithoutCancel(ctx)); err != nil {
		t.Fatalf("Release with context.WithoutCancel: %v", err)
	}
	if rdb.Exists(t.Context(), "k").Val() != 0 {
		t.Fatal("Release with context.WithoutCancel left the lease")
	}
}
