package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/offsets"
)

// A delivery recorded in dedupe is marked only once both its dedupe record
// and its outcome records are on their way's end, in either order, and
// settled only if neither was abandoned.
func TestRecordingFinishesOnTheSecondFinish(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second bool
		settled       bool
	}{
		{"both settled", true, true, true},
		{"first abandoned", false, true, false},
		{"second abandoned", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := offsets.NewTracker()
			tr.Assign(map[string][]int32{"in": {0}})
			part, _ := tr.Add("in", 0, 7, 0)
			slots := newSlots(1, 1, prometheus.NewGauge(prometheus.GaugeOpts{Name: "inflight"}))
			s := slots.acquire(context.Background())
			u := unsettled{part: part, offset: 7, slot: s, recording: &recording{}}
			u.recording.pending.Store(2)
			drained := slots.startDrain()

			u.finish(tc.first)
			if got := part.Unsettled(); got != 1 {
				t.Fatalf("after the first finish: %d unsettled, want 1 (not marked yet)", got)
			}
			select {
			case <-drained:
				t.Fatal("the drain ended after the first finish: the job is still running")
			default:
			}
			u.finish(tc.second)
			if got := part.Unsettled(); got != 0 {
				t.Fatalf("after the second finish: %d unsettled, want 0", got)
			}
			<-drained
			_, committable := offsets.Committable(tr.All())["in"][0]
			if committable != tc.settled {
				t.Fatalf("committable past the record: %v, want %v", committable, tc.settled)
			}
		})
	}
}

// The records of a dedupe batch that Redis did not take share one error:
// it is logged for the first of them, and a new batch's error again.
func TestFirstOfBatch(t *testing.T) {
	p := &Pipeline{}
	batch1, batch2 := fmt.Errorf("dedupe record of 2 ids: %w", context.DeadlineExceeded),
		fmt.Errorf("dedupe record of 1 ids: %w", context.DeadlineExceeded)
	for i, tc := range []struct {
		err  error
		want bool
	}{
		{batch1, true}, {batch1, false}, {batch2, true}, {batch2, false}, {batch1, true},
	} {
		if got := p.firstOfBatch(tc.err); got != tc.want {
			t.Errorf("call %d (%v): %v, want %v", i, tc.err, got, tc.want)
		}
	}
}
