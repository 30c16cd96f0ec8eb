// Package lease holds a Redis key as a lease: a key set to its holder's
// token with a TTL, so that one holder at a time does some work and a
// holder that dies only blocks the others until the TTL runs out.
//
// A token is a random string that names one holding of the lease (Obtain
// makes a fresh one each time, from crypto/rand). The lease is held while
// the key holds the token: Obtain sets the key only if it does not exist,
// Refresh extends the TTL and Release deletes the key, both only if the key
// still holds the token, atomically (a Lua script). So Release never
// deletes someone else's lease: not after the key expired and another
// holder took it, nor after a Release or expiry that came first.
//
// A lease is one key, so it works in Redis Cluster with any key the caller
// names, hash tag included; a caller whose script must change the lease key
// together with others gives them one hash tag.
//
// Errors are go-redis's own (a cancelled context's error once ctx ends),
// returned unwrapped so that callers wrap them as they do their other
// Redis errors. A Lease is a small value, safe to copy and for concurrent
// use.
package lease

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a lease on one key under one token. Obtaining it is Obtain or
// ObtainIn; holding it is up to Redis, which Refresh and Release ask.
type Lease struct {
	rdb   redis.Cmdable
	key   string
	token string
}

// Obtain takes the lease on key for ttl under a fresh token, unless key
// exists (anyone's lease). It reports whether the lease is now the
// caller's; on an error it is not.
func Obtain(ctx context.Context, rdb redis.Cmdable, key string, ttl time.Duration) (Lease, bool, error) {
	l := New(rdb, key, rand.Text())
	ok, err := rdb.SetNX(ctx, key, l.token, ttl).Result()
	if err != nil {
		return Lease{}, false, err
	}
	return l, ok, nil
}

// New names the lease on key under token, sending nothing: for a lease
// obtained in the caller's pipeline (ObtainIn) or under a token of the
// caller's making. token must be unique to this holding, as random as
// Obtain's.
func New(rdb redis.Cmdable, key, token string) Lease {
	return Lease{rdb: rdb, key: key, token: token}
}

// ObtainIn queues the obtaining of l for ttl in pipe, for callers that
// batch it with other commands in one round trip: once pipe is executed,
// the command's value reports whether l is held (as Obtain's bool does).
func (l Lease) ObtainIn(ctx context.Context, pipe redis.Pipeliner, ttl time.Duration) *redis.BoolCmd {
	return pipe.SetNX(ctx, l.key, l.token, ttl)
}

// Key is the leased key.
func (l Lease) Key() string { return l.key }

// Token is the token l holds the key with.
func (l Lease) Token() string { return l.token }

// The scripts of Refresh and Release: KEYS[1] is the lease key, ARGV[1]
// the token, ARGV[2] (refresh) the new TTL in milliseconds. They return 1
// if the key held the token, else 0.
var (
	refreshScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)
)

// Refresh sets the TTL of the lease to ttl from now if the caller still
// holds it, and reports whether it does: false once the key expired, was
// released, or holds another token. On an error the answer is unknown
// (false): the TTL may or may not have been set.
func (l Lease) Refresh(ctx context.Context, ttl time.Duration) (bool, error) {
	// PEXPIRE 0 would delete the key: a TTL under 1 ms is 1 ms.
	n, err := refreshScript.Run(ctx, l.rdb, []string{l.key}, l.token, max(ttl.Milliseconds(), 1)).Int()
	return err == nil && n == 1, err
}

// Release deletes the key if it still holds l's token, and does nothing
// otherwise: releasing a lease that expired, or that another holder took
// since, leaves the other's lease alone. It returns an error only if Redis
// did not answer; then the lease may still be held, until its TTL. Callers that release
// when their own context has ended pass context.WithoutCancel.
func (l Lease) Release(ctx context.Context) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err()
}
