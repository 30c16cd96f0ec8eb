package replay

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// A job holds its lease while it runs and drops it when done; a job whose
// lease another instance took stops at its next renewal and leaves the
// other's lease alone.
func TestJobLease(t *testing.T) {
	_, opts := setup(t)
	rdb := testenv.StartRedis(t).Client
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 40 {
		deadLetter(t, cl, i, "orgX", dlq.ReasonRetriesExhausted)
	}
	jctx, stop := context.WithCancel(context.Background())
	jobs := NewJobs(jctx, opts, rdb, "t:", Options{DLQTopic: "feedback.dlq", InputTopics: inputs, GroupPrefix: "feedbackd-replay-"})
	t.Cleanup(func() { stop(); jobs.Wait() })
	ctx := testenv.Context(t, 60*time.Second)
	state := func(id string) string {
		p, err := jobs.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return p.State
	}

	// Slow enough to outlast the first renewal (leaseTTL/3).
	slow := Request{Org: "orgX", Rate: 2}
	p, err := jobs.Start(ctx, slow)
	if err != nil || p.State != StateRunning {
		t.Fatalf("Start: %+v, %v", p, err)
	}
	lease := jobs.leaseKey(p.ID)
	if _, err := jobs.Start(ctx, slow); !errors.Is(err, ErrRunning) {
		t.Fatalf("Start while running: %v, want ErrRunning", err)
	}
	rdb.Set(ctx, lease, "another instance", time.Minute)
	// Get reports the job running while the other holds its lease: look at
	// what the job saved.
	saved := func() string {
		var got Progress
		b, _ := rdb.Get(ctx, jobs.statusKey(p.ID)).Bytes()
		_ = json.Unmarshal(b, &got)
		return got.State
	}
	testenv.Eventually(t, "the job stops at its next renewal", leaseTTL, func() bool { return saved() == StateInterrupted })
	if got := rdb.Get(ctx, lease).Val(); got != "another instance" {
		t.Fatalf("the stopped job changed the other's lease: %q", got)
	}

	rdb.Del(ctx, lease)
	if p, err = jobs.Start(ctx, Request{Org: "orgX"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the job ends", 30*time.Second, func() bool { return state(p.ID) == StateDone })
	testenv.Eventually(t, "the job drops its lease", 5*time.Second, func() bool { return rdb.Exists(ctx, lease).Val() == 0 })
}
