// Package offsets tracks records from dispatch to settlement so that a
// consumer commits, per partition, only the offset below which every record
// is settled, while records are processed concurrently and finish in any
// order.
package offsets

import (
	"context"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Partition tracks one assigned partition. Add must be called in offset
// order, from one goroutine; the other methods may be called from any
// goroutine. All methods are safe for concurrent use.
type Partition struct {
	Topic string
	ID    int32

	mu      sync.Mutex
	pending []entry // tracked records at or above the commit point, ascending
	start   int     // pending[:start] are below the commit point
	waiting int     // entries neither settled nor abandoned
	idle    chan struct{}
	next    kgo.EpochOffset // commit point: every record below it is settled
	closed  bool
	// Records at or above fresh were produced after this member got the
	// partition, so no earlier owner can have processed them; freshKnown
	// is false until the first fetch tells.
	fresh      int64
	freshKnown bool
}

type state uint8

const (
	inFlight state = iota
	settled
	abandoned
)

type entry struct {
	offset int64
	epoch  int32
	state  state
}

// Add tracks the record at offset. It returns false once the partition is
// revoked: the caller must drop the record.
func (p *Partition) Add(offset int64, epoch int32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.start > 1024 && p.start*2 > len(p.pending) { // reclaim the consumed head
		p.pending = append(p.pending[:0], p.pending[p.start:]...)
		p.start = 0
	}
	p.pending = append(p.pending, entry{offset: offset, epoch: epoch})
	if p.waiting == 0 {
		p.idle = make(chan struct{})
	}
	p.waiting++
	return true
}

// Settle marks the record at offset as done and moves the commit point past
// every settled record at its head. Unknown offsets are ignored.
func (p *Partition) Settle(offset int64) { p.mark(offset, settled) }

// Abandon marks a tracked record that will not be processed here (its
// partition is being revoked): it is not waited for, and the commit point
// never passes it, so the partition's next owner processes it.
func (p *Partition) Abandon(offset int64) { p.mark(offset, abandoned) }

func (p *Partition) mark(offset int64, to state) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.pending[p.start:]
	i, ok := slices.BinarySearchFunc(live, offset, func(e entry, o int64) int {
		switch {
		case e.offset < o:
			return -1
		case e.offset > o:
			return 1
		}
		return 0
	})
	if !ok || live[i].state != inFlight {
		return
	}
	live[i].state = to
	if p.waiting--; p.waiting == 0 {
		close(p.idle)
		p.idle = nil
	}
	for p.start < len(p.pending) && p.pending[p.start].state == settled {
		e := p.pending[p.start]
		p.next = kgo.EpochOffset{Epoch: e.epoch, Offset: e.offset + 1}
		p.start++
	}
}

// Fetched notes the partition's high watermark from a fetch; the first
// call after the assignment bounds the records an earlier owner may have
// processed (see MayBeReread). Later calls change nothing.
func (p *Partition) Fetched(highWatermark int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.freshKnown && highWatermark >= 0 {
		p.fresh, p.freshKnown = highWatermark, true
	}
}

// MayBeReread reports whether the record at offset may have been processed
// already by an earlier owner of the partition (a crash or a rebalance
// before its offset was committed): it existed before the first fetch of
// this assignment. True while that is unknown.
func (p *Partition) MayBeReread(offset int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.freshKnown || offset < p.fresh
}

// Closed reports whether the partition was revoked.
func (p *Partition) Closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Unsettled is how many tracked records are neither settled nor abandoned.
func (p *Partition) Unsettled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// Wait blocks until no tracked record is in flight, or ctx ends.
func (p *Partition) Wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committable returns the commit point, if any record settled yet.
func (p *Partition) committable() (kgo.EpochOffset, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next, p.next.Offset > 0
}

// Tracker holds the partitions a consumer owns. It is safe for concurrent
// use.
type Tracker struct {
	mu    sync.RWMutex
	parts map[string]map[int32]*Partition
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{parts: map[string]map[int32]*Partition{}} }

// Assign starts tracking partitions; an already tracked one is kept.
func (t *Tracker) Assign(assigned map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, ps := range assigned {
		if t.parts[topic] == nil {
			t.parts[topic] = map[int32]*Partition{}
		}
		for _, id := range ps {
			if t.parts[topic][id] == nil {
				t.parts[topic][id] = &Partition{Topic: topic, ID: id}
			}
		}
	}
}

// Get returns the tracked partition, or nil if it is not assigned.
func (t *Tracker) Get(topic string, id int32) *Partition {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.parts[topic][id]
}

// Revoke stops tracking partitions and returns them. Their Adds fail from
// now on; Settle, Wait and Committable keep working so that a caller can
// drain in-flight records and commit what they settled.
func (t *Tracker) Revoke(revoked map[string][]int32) []*Partition {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Partition
	for topic, ps := range revoked {
		for _, id := range ps {
			if p := t.parts[topic][id]; p != nil {
				p.mu.Lock()
				p.closed = true
				p.mu.Unlock()
				out = append(out, p)
				delete(t.parts[topic], id)
			}
		}
	}
	return out
}

// All returns the tracked partitions.
func (t *Tracker) All() []*Partition {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var ps []*Partition
	for _, byID := range t.parts {
		for _, p := range byID {
			ps = append(ps, p)
		}
	}
	return ps
}

// Committable returns the commit points of ps, in the shape kgo's
// CommitOffsetsSync takes. Committing the same point again is harmless, so
// callers commit everything each time and a failed commit heals itself.
func Committable(ps []*Partition) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range ps {
		if eo, ok := p.committable(); ok {
			if out[p.Topic] == nil {
				out[p.Topic] = map[int32]kgo.EpochOffset{}
			}
			out[p.Topic][p.ID] = eo
		}
	}
	return out
}
