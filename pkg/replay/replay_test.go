package replay

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
	"github.com/feedbackd/feedbackd/test/testenv"
)

var inputs = []string{"feedback.sent", "feedback.bounce"}

func setup(t *testing.T) (*testenv.Kafka, []kgo.Opt) {
	t.Helper()
	k := testenv.StartKafka(t)
	opts := []kgo.Opt{kgo.SeedBrokers(k.Seeds...)}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testenv.Context(t, 10*time.Second)
	specs := []topics.Spec{{Name: "feedback.dlq", Partitions: 3}}
	for _, in := range inputs {
		specs = append(specs, topics.Spec{Name: in, Partitions: 2})
	}
	if err := topics.Ensure(ctx, kadm.NewClient(cl), specs...); err != nil {
		t.Fatal(err)
	}
	return k, opts
}

// deadLetter writes one dead letter of org with the given reason.
func deadLetter(t *testing.T, cl *kgo.Client, i int, org, reason string, extra ...kgo.RecordHeader) {
	t.Helper()
	value := fmt.Sprintf(`{"imsOrg":%q,"sandbox":{"id":"sb"},"channel":"email","messageDeliveryFeedback":{"feedbackStatus":{"value":"bounce"}}}`, org)
	e := header.DeadLetter{Reason: reason, WebhookID: fmt.Sprintf("w-%d", i), Attempts: 10,
		FirstAttemptAt: time.Now().Add(-time.Hour).Truncate(time.Second), FailedAt: time.Now(),
		Source: header.Source("feedback.bounce", 0, int64(i))}
	orig := &kgo.Record{Key: []byte(org + "/sb"), Value: []byte(value), Headers: append([]kgo.RecordHeader{{Key: "traceparent", Value: []byte("tp")}}, extra...)}
	if err := cl.ProduceSync(context.Background(), dlq.ToKafka("feedback.dlq", e, orig)).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readAll reads the committed records of topic: nothing when it holds
// none, else until none has come for a second after the first (waited for
// up to 15 s: a new client's first fetch can take seconds on a loaded
// machine). Reading "to the end offset" does not work on a topic written
// in transactions: its last offsets are commit markers, never returned.
func readAll(t *testing.T, opts []kgo.Opt, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if empty(t, cl, topic) {
		return nil
	}
	var out []*kgo.Record
	wait := 15 * time.Second
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 {
			return out
		}
		wait = time.Second
	}
}

// empty reports whether no partition of topic holds an offset.
func empty(t *testing.T, cl *kgo.Client, topic string) bool {
	t.Helper()
	adm := kadm.NewClient(cl)
	ctx := testenv.Context(t, 10*time.Second)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error() // a partition's, or the topic's
	}
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	held := false
	ends.Each(func(e kadm.ListedOffset) {
		if s, ok := starts.Lookup(e.Topic, e.Partition); !ok || s.Offset < e.Offset {
			held = true
		}
	})
	return !held
}

func TestReplayByOrgOnceAndResume(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	for i := range 30 {
		org := "orgX"
		if i%3 == 0 {
			org = "orgY"
		}
		deadLetter(t, cl, i, org, dlq.ReasonRetriesExhausted)
	}
	ctx := testenv.Context(t, 60*time.Second)
	o := Options{DLQTopic: "feedback.dlq", InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}

	dry, err := Run(ctx, opts, Request{Org: "orgX", DryRun: true}, o)
	if err != nil || dry.State != StateDone || dry.Matched != 20 || dry.Replayed != 20 || dry.Scanned != 30 { // Replayed: would be
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if got := readAll(t, opts, "feedback.bounce"); len(got) != 0 {
		t.Fatalf("dry run wrote %d records", len(got))
	}

	p, err := Run(ctx, opts, Request{Org: "orgX"}, o)
	if err != nil || p.State != StateDone || p.Replayed != 20 || p.Matched != 20 {
		t.Fatalf("replay: %+v %v", p, err)
	}
	got := readAll(t, opts, "feedback.bounce")
	if len(got) != 20 {
		t.Fatalf("%d records re-injected, want 20", len(got))
	}
	seen := map[string]bool{}
	for _, r := range got {
		h := map[string]string{}
		for _, hd := range r.Headers {
			h[hd.Key] = string(hd.Value)
		}
		first, err := header.ParseTime(h[header.ReplayFirstAttemptAt])
		if h["traceparent"] != "tp" || h[header.ReplayJob] != p.ID || h[header.ReplayCount] != "1" ||
			h[header.ReplayPriorAttempts] != "10" || err != nil || header.FormatTime(first) != h[header.ReplayFirstAttemptAt] ||
			first.IsZero() || h[header.DLQReason] != "" {
			t.Fatalf("headers of a re-injected record: %v", h)
		}
		seen[h[header.WebhookID]] = true
		if string(r.Key) != "orgX/sb" {
			t.Fatalf("replayed a record of %s", r.Key)
		}
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct webhook-ids", len(seen))
	}

	// The same request again: nothing new to do.
	again, err := Run(ctx, opts, Request{Org: "orgX", Rate: 1000}, o)
	if err != nil || again.Replayed != 0 || again.Total != 0 {
		t.Fatalf("second identical run: %+v %v", again, err)
	}
	// New dead letters: one fresh, one that this job's replay produced.
	deadLetter(t, cl, 100, "orgX", dlq.ReasonRejected)
	deadLetter(t, cl, 101, "orgX", dlq.ReasonRejected, kgo.RecordHeader{Key: header.ReplayJob, Value: []byte(p.ID)})
	third, err := Run(ctx, opts, Request{Org: "orgX"}, o)
	if err != nil || third.Replayed != 1 || third.Skipped != 1 {
		t.Fatalf("run after new dead letters: %+v %v", third, err)
	}
	if n := len(readAll(t, opts, "feedback.bounce")); n != 21 {
		t.Fatalf("%d records re-injected in all, want 21", n)
	}
}

// Ctrl-C half-way through: the open transaction is aborted, and running
// the job again replays each record exactly once.
func TestReplayInterruptedResumesExactlyOnce(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	for i := range 200 {
		deadLetter(t, cl, i, "orgX", dlq.ReasonRetriesExhausted)
	}
	o := Options{DLQTopic: "feedback.dlq", InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}
	// At 50/s a batch (one transaction) takes a second: the interruption
	// lands in the middle of one, whose records must not count.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	first, err := Run(ctx, opts, Request{Org: "orgX", Rate: 50}, o)
	if err != nil || first.State != StateInterrupted || first.Replayed >= 200 {
		t.Fatalf("interrupted run: %+v %v", first, err)
	}
	second, err := Run(testenv.Context(t, 60*time.Second), opts, Request{Org: "orgX"}, o)
	if err != nil || second.State != StateDone {
		t.Fatalf("resumed run: %+v %v", second, err)
	}
	if first.Replayed+second.Replayed != 200 {
		t.Fatalf("replayed %d + %d, want 200 in all", first.Replayed, second.Replayed)
	}
	ids := map[string]int{}
	for _, r := range readAll(t, opts, "feedback.bounce") {
		for _, h := range r.Headers {
			if h.Key == header.WebhookID {
				ids[string(h.Value)]++
			}
		}
	}
	if len(ids) != 200 {
		t.Fatalf("%d distinct records re-injected, want 200", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s re-injected %d times", id, n)
		}
	}
}

// A run reads to the end offsets of when it started: dead letters that
// arrive meanwhile are left to the next run, as the dry run says.
func TestReplayStopsAtTheEndItStartedWith(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	for i := range 10 {
		deadLetter(t, cl, i, "orgX", dlq.ReasonRejected)
	}
	o := Options{DLQTopic: "feedback.dlq", InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}
	added := false
	o.Progress = func(p Progress) {
		if !added { // the run knows its end: more dead letters arrive now
			added = true
			for i := 10; i < 15; i++ {
				deadLetter(t, cl, i, "orgX", dlq.ReasonRejected)
			}
		}
	}
	ctx := testenv.Context(t, 60*time.Second)
	p, err := Run(ctx, opts, Request{Org: "orgX"}, o)
	if err != nil || p.Total != 10 || p.Scanned != 10 || p.Replayed != 10 {
		t.Fatalf("first run: %+v %v", p, err)
	}
	o.Progress = nil
	p, err = Run(ctx, opts, Request{Org: "orgX"}, o)
	if err != nil || p.Total != 5 || p.Replayed != 5 {
		t.Fatalf("second run: %+v %v", p, err)
	}
}

// A dead letter is re-injected at most once, whatever job asks: an
// overlapping job skips what another replayed.
func TestOverlappingJobsDoNotReplayTwice(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	for i := range 6 {
		deadLetter(t, cl, i, "orgX", dlq.ReasonRetriesExhausted)
	}
	o := Options{DLQTopic: "feedback.dlq", InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}
	ctx := testenv.Context(t, 60*time.Second)
	if p, err := Run(ctx, opts, Request{Org: "orgX"}, o); err != nil || p.Replayed != 6 {
		t.Fatalf("job A: %+v %v", p, err)
	}
	p, err := Run(ctx, opts, Request{Reason: dlq.ReasonRetriesExhausted}, o)
	if err != nil || p.Matched != 6 || p.Replayed != 0 || p.Skipped != 6 {
		t.Fatalf("job B: %+v %v", p, err)
	}
	if n := len(readAll(t, opts, "feedback.bounce")); n != 6 {
		t.Fatalf("%d re-injections, want 6", n)
	}
}

// A dead letter that cannot go back where it came from fails the run, and
// the job's position stays before it; fixed, the job replays it.
func TestUnknownSourceTopicFailsWithoutSkipping(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	deadLetter(t, cl, 0, "orgX", dlq.ReasonRejected) // source feedback.bounce
	ctx := testenv.Context(t, 60*time.Second)
	o := Options{DLQTopic: "feedback.dlq", InputTopics: []string{"feedback.sent"}, GroupPrefix: "feedbackd-replay-"}
	p, err := Run(ctx, opts, Request{Org: "orgX"}, o)
	if err == nil || p.State != StateFailed || !strings.Contains(err.Error(), "not an input topic") {
		t.Fatalf("run with the wrong input topics: %+v %v", p, err)
	}
	o.InputTopics = inputs
	if p, err := Run(ctx, opts, Request{Org: "orgX"}, o); err != nil || p.Replayed != 1 {
		t.Fatalf("run with the right input topics: %+v %v", p, err)
	}
}

// A re-injection that cannot be written aborts the batch: nothing is
// committed past the dead letter.
func TestFailedReinjectionCommitsNothing(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	e := header.DeadLetter{Reason: dlq.ReasonRejected, WebhookID: "w-missing", FailedAt: time.Now(), Source: header.Source("feedback.missing", 0, 0)}
	if err := cl.ProduceSync(context.Background(), dlq.ToKafka("feedback.dlq", e, &kgo.Record{Key: []byte("orgX/sb"), Value: []byte(`{"imsOrg":"orgX"}`)})).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 90*time.Second)
	o := Options{DLQTopic: "feedback.dlq", InputTopics: append(inputs, "feedback.missing"), GroupPrefix: "feedbackd-replay-"}
	if p, err := Run(ctx, append(opts, kgo.UnknownTopicRetries(1)), Request{Org: "orgX"}, o); err == nil || p.State != StateFailed {
		t.Fatalf("re-injection into a missing topic: %+v %v", p, err)
	}
	if err := topics.Ensure(ctx, kadm.NewClient(cl), topics.Spec{Name: "feedback.missing", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if p, err := Run(ctx, opts, Request{Org: "orgX"}, o); err != nil || p.Replayed != 1 {
		t.Fatalf("after creating the topic: %+v %v", p, err)
	}
}
