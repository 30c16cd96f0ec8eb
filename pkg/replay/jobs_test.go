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

// A recovery interrupted by its instance's stop is resumed by the next
// instance's ResumeRecoveries, where it stopped: each record once, the
// counts of the whole job; the tenant's list shows it, another's does not.
func TestRecoveryResumedByAnotherInstance(t *testing.T) {
	_, opts := setup(t)
	rdb := testenv.StartRedis(t).Client
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Now().Add(-time.Hour)
	for i := range 30 {
		inputEvent(t, cl, "feedback.sent", i, "orgA", "prod", base.Add(time.Duration(i)*time.Second), "orgA/prod")
	}
	o := Options{InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}
	ctx := testenv.Context(t, 60*time.Second)

	jctx, stop := context.WithCancel(context.Background())
	first := NewJobs(jctx, opts, rdb, "t:", o)
	req := Request{Source: SourceInput, Org: "orgA", Sandbox: "prod", Since: base.Add(-time.Minute).Format(time.RFC3339), Until: base.Add(time.Minute).Format(time.RFC3339), Rate: 5}
	p, err := first.Start(ctx, req)
	if err != nil || p.State != StateRunning || p.Request.Job == "" {
		t.Fatalf("Start: %+v, %v", p, err)
	}
	testenv.Eventually(t, "some resent", 20*time.Second, func() bool {
		got, _ := first.Get(ctx, p.ID)
		return got.Replayed >= 5
	})
	stop()
	first.Wait()
	before, _ := first.Get(ctx, p.ID)
	if before.State != StateInterrupted || before.Replayed >= 30 {
		t.Fatalf("stopped: %+v", before)
	}

	jctx2, stop2 := context.WithCancel(context.Background())
	second := NewJobs(jctx2, opts, rdb, "t:", o)
	t.Cleanup(func() { stop2(); second.Wait() })
	second.ResumeRecoveries(time.Hour) // at once, then hourly
	var done Progress
	testenv.Eventually(t, "resumed to the end", 30*time.Second, func() bool {
		done, _ = second.Get(ctx, p.ID)
		return done.State == StateDone
	})
	if done.Replayed != 30 || done.Matched != 30 || !done.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("whole job: %+v (before the stop: %+v)", done, before)
	}
	ids := recovered(t, opts, "feedback.sent", p.ID)
	if len(ids) != 30 {
		t.Fatalf("%d distinct records resent, want 30", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s resent %d times", id, n)
		}
	}
	if l, err := second.Recoveries(ctx, "orgA", "prod", 10); err != nil || len(l) != 1 || l[0].ID != p.ID {
		t.Fatalf("orgA's recoveries: %+v %v", l, err)
	}
	if l, _ := second.Recoveries(ctx, "orgB", "prod", 10); len(l) != 0 {
		t.Fatalf("orgB sees %+v", l)
	}
	if l, _ := second.List(ctx, 10); len(l) != 0 {
		t.Fatalf("a recovery among the replays: %+v", l)
	}
}
