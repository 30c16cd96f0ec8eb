package pipeline

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/offsets"
)

// holds keeps retry records that are not due yet. A partition with held
// records is paused, so memory is bounded by what one fetch returned for
// it; its records are released as they come due, in any order (offsets are
// tracked one by one), and the partition resumes once none is left.
// It is safe for concurrent use.
type holds struct {
	pause, resume func(topic string, partition int32)
	release       func(job) // starts a due job; may wait for a slot
	held          prometheus.Gauge

	mu sync.Mutex
	by map[*offsets.Partition]*held
}

type held struct {
	jobs  []job
	timer *time.Timer
}

// hold keeps j if it is not due or its partition already has held records
// (those were fetched first). It reports whether it took j.
func (h *holds) hold(part *offsets.Partition, j job) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if part.Closed() { // revoked or lost meanwhile: the next owner has it
		part.Abandon(j.rec.Offset)
		return true
	}
	q := h.by[part]
	if q == nil {
		if !time.Now().Before(j.state.DueAt) {
			return false
		}
		q = &held{}
		h.by[part] = q
		h.pause(part.Topic, part.ID)
	}
	q.jobs = append(q.jobs, j)
	h.held.Inc()
	h.schedule(part, q)
	return true
}

// schedule (re)arms the partition's timer for its earliest due record.
// Called with h.mu held.
func (h *holds) schedule(part *offsets.Partition, q *held) {
	next := q.jobs[0].state.DueAt
	for _, j := range q.jobs[1:] {
		if j.state.DueAt.Before(next) {
			next = j.state.DueAt
		}
	}
	if q.timer != nil {
		q.timer.Stop()
	}
	q.timer = time.AfterFunc(time.Until(next), func() { h.due(part, q) })
}

// due releases the partition's due records and resumes it when none is
// left. Releasing may wait for a slot, so it happens outside the lock.
func (h *holds) due(part *offsets.Partition, q *held) {
	h.mu.Lock()
	if h.by[part] != q { // dropped meanwhile
		h.mu.Unlock()
		return
	}
	now := time.Now()
	var due []job
	keep := q.jobs[:0]
	for _, j := range q.jobs {
		if now.Before(j.state.DueAt) {
			keep = append(keep, j)
		} else {
			due = append(due, j)
		}
	}
	q.jobs = keep
	if len(keep) == 0 {
		delete(h.by, part)
		h.resume(part.Topic, part.ID)
	} else {
		h.schedule(part, q)
	}
	h.held.Sub(float64(len(due)))
	h.mu.Unlock()

	for _, j := range due {
		h.release(j)
	}
}

// drop abandons the held records of revoked partitions: the next owner
// reads them again from the last commit.
func (h *holds) drop(parts []*offsets.Partition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, part := range parts {
		q := h.by[part]
		if q == nil {
			continue
		}
		q.timer.Stop()
		for _, j := range q.jobs {
			part.Abandon(j.rec.Offset)
		}
		h.held.Sub(float64(len(q.jobs)))
		delete(h.by, part)
		h.resume(part.Topic, part.ID)
	}
}

func (h *holds) dropAll() {
	h.mu.Lock()
	parts := make([]*offsets.Partition, 0, len(h.by))
	for part := range h.by {
		parts = append(parts, part)
	}
	h.mu.Unlock()
	h.drop(parts)
}
