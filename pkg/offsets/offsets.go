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
// goroutine. All methods are safe for concurrent use. A consumer adds
// records through Tracker.Add, which also handles a client that rewinds.
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
	// retired: the client rewound, and a successor tracks the partition
	// from the rewind on (see Tracker.Add). This one only finishes the
	// records it had in flight; its commit point is no longer used.
	retired bool
	// prev is a retired predecessor that had records in flight when this
	// partition took over at from; set before this one is published and
	// never changed, like every link of the chain behind it.
	prev  *Partition
	from  int64
	last  int64 // the offset added last, if added
	added bool
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
// revoked or retired, and for an offset that is not above the last one
// added (a rewind, which Tracker.Add handles): the caller must drop the
// record.
func (p *Partition) Add(offset int64, epoch int32) bool {
	return p.add(offset, epoch) == added
}

type addResult uint8

const (
	added addResult = iota
	refused
	rewound
)

func (p *Partition) add(offset int64, epoch int32) addResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return refused
	case p.added && offset <= p.last:
		return rewound
	}
	p.last, p.added = offset, true
	if p.start > 1024 && p.start*2 > len(p.pending) { // reclaim the consumed head
		p.pending = append(p.pending[:0], p.pending[p.start:]...)
		p.start = 0
	}
	p.pending = append(p.pending, entry{offset: offset, epoch: epoch})
	if p.waiting == 0 {
		p.idle = make(chan struct{})
	}
	p.waiting++
	return added
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

// committable returns the commit point, if any record settled yet and the
// partition is not retired. After a rewind it never passes a record below
// the rewind that a predecessor has not settled: the client will not read
// that one again (a rewind need not go back past everything in flight).
func (p *Partition) committable() (kgo.EpochOffset, bool) {
	p.mu.Lock()
	eo, ok := p.next, p.next.Offset > 0 && !p.retired
	p.mu.Unlock()
	if !ok {
		return eo, false
	}
	for q := p.prev; q != nil; q = q.prev {
		if f, ok := q.lowestUnsettled(); ok && f.Offset < p.from && f.Offset < eo.Offset {
			eo = f
		}
	}
	return eo, true
}

// lowestUnsettled returns the lowest tracked record not settled (in flight
// or abandoned), if any.
func (p *Partition) lowestUnsettled() (kgo.EpochOffset, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start >= len(p.pending) { // every record at the head is settled
		return kgo.EpochOffset{}, false
	}
	e := p.pending[p.start]
	return kgo.EpochOffset{Epoch: e.epoch, Offset: e.offset}, true
}

// retire closes p after the client rewound to from and returns its
// successor, which counts everything p was given as a possible re-read.
// Called with the tracker's lock held.
func (p *Partition) retire(from int64) *Partition {
	p.mu.Lock()
	p.closed, p.retired = true, true
	next := &Partition{Topic: p.Topic, ID: p.ID, fresh: p.last + 1, freshKnown: true, from: from}
	if p.freshKnown {
		next.fresh = max(next.fresh, p.fresh)
	}
	p.mu.Unlock()
	// Link the nearest predecessor still holding records not settled, so
	// that a revoke drains them and the commit point waits for them.
	for q := p; q != nil; q = q.prev {
		if _, ok := q.lowestUnsettled(); ok {
			next.prev = q
			break
		}
	}
	return next
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

// Add tracks a fetched record on its partition and returns the partition
// it is tracked on (the caller settles or abandons it there), or nil if
// the partition is not assigned: the caller drops the record.
//
// Offsets only grow within an assignment, except when the client rewinds:
// after a broker reports lost records (an offset out of range, or a leader
// epoch it cannot place, KIP-320), franz-go resets the partition as
// ConsumeResetOffset says and reads again records this member read
// already, while some of those may still be in flight. Then the partition
// is retired: it finishes what it has in flight but is never committed
// again, and a successor tracks the partition from the rewind on. Every
// record below the highest offset read before is a re-read to the
// successor (MayBeReread), so dedupe checks it, and its commit point starts
// again from the rewind: it may go back, never past a record not settled
// since. retired is the partition retired by this call, if any.
func (t *Tracker) Add(topic string, id int32, offset int64, epoch int32) (p, retired *Partition) {
	p = t.Get(topic, id)
	if p == nil {
		return nil, nil
	}
	switch p.add(offset, epoch) {
	case added:
		return p, nil
	case refused:
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.parts[topic][id] != p { // revoked meanwhile
		return nil, nil
	}
	next := p.retire(offset)
	t.parts[topic][id] = next
	next.add(offset, epoch)
	return next, p
}

// Get returns the tracked partition, or nil if it is not assigned.
func (t *Tracker) Get(topic string, id int32) *Partition {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.parts[topic][id]
}

// Revoke stops tracking partitions and returns them, with their retired
// predecessors that still have records in flight. Their Adds fail from now
// on; Settle, Wait and Committable keep working so that a caller can drain
// in-flight records and commit what they settled.
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
				for q := p.prev; q != nil; q = q.prev {
					if _, ok := q.lowestUnsettled(); ok { // drained ones need nothing
						out = append(out, q)
					}
				}
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
