package pipeline

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/offsets"
)

type holdRecorder struct {
	mu       sync.Mutex
	events   []string
	released []int64
}

func (r *holdRecorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func newTestHolds(r *holdRecorder) *holds {
	return &holds{
		by:     map[*offsets.Partition]*held{},
		pause:  func(string, int32) { r.add("pause") },
		resume: func(string, int32) { r.add("resume") },
		release: func(j job) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.released = append(r.released, j.rec.Offset)
		},
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "held"}),
	}
}

func retryJob(part *offsets.Partition, offset int64, due time.Time) job {
	part.Add(offset, 0)
	return job{rec: &kgo.Record{Offset: offset}, part: part, state: &header.Retry{DueAt: due}}
}

// Held records are released when due, in due order whatever their offsets,
// and the partition stays paused until none is left.
func TestHoldsReleaseWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &holdRecorder{}
		h := newTestHolds(r)
		part := &offsets.Partition{Topic: "feedback.retry.5s", ID: 0}
		now := time.Now()
		if h.hold(part, retryJob(part, 1, now.Add(-time.Second))) {
			t.Fatal("a due record was held")
		}
		for _, j := range []job{
			retryJob(part, 10, now.Add(5*time.Second)),
			retryJob(part, 11, now.Add(time.Second)),
			retryJob(part, 12, now.Add(3*time.Second)),
		} {
			if !h.hold(part, j) {
				t.Fatalf("record %d not held", j.rec.Offset)
			}
		}
		// Fetched after held ones: held too, even though it is due.
		if !h.hold(part, retryJob(part, 13, now.Add(-time.Second))) {
			t.Fatal("a record behind held ones was not held")
		}
		for _, step := range []struct {
			after time.Duration
			want  []int64
		}{
			{500 * time.Millisecond, []int64{13}},
			{time.Second, []int64{13, 11}},
			{3 * time.Second, []int64{13, 11, 12}},
			{5 * time.Second, []int64{13, 11, 12, 10}},
		} {
			time.Sleep(time.Until(now.Add(step.after)))
			synctest.Wait()
			r.mu.Lock()
			got := slices.Clone(r.released)
			r.mu.Unlock()
			if !slices.Equal(got, step.want) {
				t.Fatalf("after %s released %v, want %v", step.after, got, step.want)
			}
		}
		if !slices.Equal(r.events, []string{"pause", "resume"}) {
			t.Fatalf("pause/resume calls: %v", r.events)
		}
	})
}

// Dropping a revoked partition abandons its held records (the next owner
// reads them) and resumes it; a closed partition holds nothing.
func TestHoldsDropAndClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &holdRecorder{}
		h := newTestHolds(r)
		tr := offsets.NewTracker()
		tr.Assign(map[string][]int32{"feedback.retry.1h": {0}})
		part := tr.Get("feedback.retry.1h", 0)
		h.hold(part, retryJob(part, 7, time.Now().Add(time.Hour)))
		tr.Revoke(map[string][]int32{"feedback.retry.1h": {0}})
		h.drop([]*offsets.Partition{part})
		if part.Unsettled() != 0 {
			t.Fatal("held record neither settled nor abandoned after drop")
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if len(r.released) != 0 {
			t.Fatalf("dropped record released: %v", r.released)
		}
		if !slices.Equal(r.events, []string{"pause", "resume"}) {
			t.Fatalf("pause/resume calls: %v", r.events)
		}
		// A record of the closed partition arriving late is abandoned, and
		// the partition is not paused again.
		tr.Assign(map[string][]int32{"x": {1}})
		p2 := tr.Get("x", 1)
		j := retryJob(p2, 3, time.Now().Add(time.Hour))
		tr.Revoke(map[string][]int32{"x": {1}})
		if !h.hold(p2, j) || p2.Unsettled() != 0 || len(r.events) != 2 {
			t.Fatalf("closed partition: unsettled %d, events %v", p2.Unsettled(), r.events)
		}
	})
}
