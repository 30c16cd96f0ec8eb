package configstore

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// cache is a bounded, TTL-limited map from config key to target (nil: the
// tenant has no config). When full it evicts an arbitrary entry, which for
// a cache of hot tenants in front of Redis is as good as LRU and costs
// nothing per hit.
//
// Invalidation bumps a generation counter; a lookup that read Redis before
// an invalidation does not store its possibly stale answer.
type cache struct {
	size int
	ttl  time.Duration
	gen  atomic.Uint64

	mu sync.RWMutex
	m  map[string]cached
}

type cached struct {
	t       *webhook.Target
	expires time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, m: make(map[string]cached)}
}

// get takes the key as bytes so that a hit does not allocate: the
// compiler does not copy string(key) for a map index.
func (c *cache) get(key []byte) (*webhook.Target, bool) {
	c.mu.RLock()
	e, ok := c.m[string(key)]
	c.mu.RUnlock()
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	return e.t, true
}

func (c *cache) generation() uint64 { return c.gen.Load() }

func (c *cache) put(key string, t *webhook.Target, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= c.size {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = cached{t: t, expires: time.Now().Add(c.ttl)}
}

func (c *cache) invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	delete(c.m, key)
}

func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	clear(c.m)
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
