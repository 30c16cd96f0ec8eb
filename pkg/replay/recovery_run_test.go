package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// inputEvent writes one event of org/sb to topic with the given record
// timestamp; an odd i has no eventId (its webhook-id is derived).
func inputEvent(t *testing.T, cl *kgo.Client, topic string, i int, org, sb string, at time.Time, key string) {
	t.Helper()
	ev := map[string]any{
		"requestId": fmt.Sprintf("req-%d", i), "imsOrg": org, "sandbox": map[string]any{"id": sb},
		"channel": "email", "messageExecution": map[string]any{"campaignID": "c1"},
		"messageDeliveryFeedback": map[string]any{"feedbackStatus": map[string]any{"value": "bounce"}},
	}
	if i%2 == 0 {
		ev["eventId"] = fmt.Sprintf("ev-%s-%d", org, i)
	}
	b, _ := json.Marshal(ev)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: b, Timestamp: at}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// recovered returns the webhook-ids of the records job re-injected into
// topic, with how many times each was.
func recovered(t *testing.T, opts []kgo.Opt, topic, job string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range readAll(t, opts, topic) {
		if header.Get(r.Headers, header.RecoverJob) == job {
			ids[header.Get(r.Headers, header.WebhookID)]++
		}
	}
	return ids
}

// A recovery re-injects exactly the tenant's records of its window, with
// their webhook-ids, once, also when it is interrupted and run again; a
// dry run counts the same and writes nothing; the answer says what
// retention removed.
func TestRecoveryWindowOnceAndResume(t *testing.T) {
	_, opts := setup(t)
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	inWindow := map[string]bool{}
	for i := range 120 {
		at := base.Add(time.Duration(i) * 15 * time.Second) // 30 minutes
		key := "orgA/prod"
		if i%3 == 0 {
			key = "" // no key: the value says whose it is
		}
		inputEvent(t, cl, "feedback.bounce", i, "orgA", "prod", at, key)
		inputEvent(t, cl, "feedback.bounce", 1000+i, "orgB", "prod", at, "orgB/prod")
		if !at.Before(base.Add(10*time.Minute)) && at.Before(base.Add(20*time.Minute)) {
			inWindow[fmt.Sprint(i)] = true
		}
	}
	o := Options{InputTopics: inputs, GroupPrefix: "feedbackd-replay-"}
	body := fmt.Sprintf(`{"since":%q,"until":%q,"rate":10}`, base.Add(10*time.Minute).Format(time.RFC3339Nano), base.Add(20*time.Minute).Format(time.RFC3339Nano))
	req, err := ParseRecovery("orgA", "prod", []byte(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}

	dry := req
	dry.DryRun = true
	d, err := Run(testenv.Context(t, 30*time.Second), opts, dry, o)
	if err != nil || d.State != StateDone || d.Matched != int64(len(inWindow)) || d.Replayed != int64(len(inWindow)) {
		t.Fatalf("dry run: %+v %v (want %d)", d, err, len(inWindow))
	}
	if n := len(recovered(t, opts, "feedback.bounce", req.ID())); n != 0 {
		t.Fatalf("the dry run wrote %d records", n)
	}
	for _, r := range d.Topics {
		if !r.Complete || r.Unreachable != nil || (r.Topic == "feedback.bounce" && !r.Earliest.Equal(base)) {
			t.Fatalf("reach: %+v", d.Topics)
		}
	}

	// At 10/s a batch takes a second: the interruption lands in one.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	first, err := Run(ctx, opts, req, o)
	if err != nil || first.State != StateInterrupted || first.Replayed >= int64(len(inWindow)) {
		t.Fatalf("interrupted run: %+v %v", first, err)
	}
	req.Rate = 0
	second, err := Run(testenv.Context(t, 60*time.Second), opts, req, o)
	if err != nil || second.State != StateDone {
		t.Fatalf("resumed run: %+v %v", second, err)
	}
	if first.Replayed+second.Replayed != int64(len(inWindow)) {
		t.Fatalf("re-injected %d + %d, want %d in all", first.Replayed, second.Replayed, len(inWindow))
	}
	ids := recovered(t, opts, "feedback.bounce", req.ID())
	if len(ids) != len(inWindow) {
		t.Fatalf("%d distinct records re-injected, want %d", len(ids), len(inWindow))
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s re-injected %d times", id, n)
		}
	}

	// A new job resends the window again, and not the copies the first
	// one made (they are in the topic, though not in the window).
	next, _ := ParseRecovery("orgA", "prod", []byte(body), time.Now())
	third, err := Run(testenv.Context(t, 60*time.Second), opts, next, o)
	if err != nil || third.Replayed != int64(len(inWindow)) || len(recovered(t, opts, "feedback.bounce", next.ID())) != len(inWindow) {
		t.Fatalf("a new job: %+v %v", third, err)
	}

	// Retention removes the oldest records of a partition: the answer says
	// what of the window was not reachable.
	adm := kadm.NewClient(cl)
	ends, err := adm.ListOffsetsAfterMilli(context.Background(), base.Add(15*time.Minute).UnixMilli(), "feedback.bounce")
	if err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { del.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset}) })
	if _, err := adm.DeleteRecords(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	late, _ := ParseRecovery("orgA", "prod", []byte(body), time.Now())
	late.DryRun = true
	p, err := Run(testenv.Context(t, 30*time.Second), opts, late, o)
	if err != nil || p.State != StateDone {
		t.Fatalf("after retention: %+v %v", p, err)
	}
	for _, r := range p.Topics {
		if r.Topic != "feedback.bounce" {
			continue
		}
		since, _, _ := late.window()
		if r.Complete || r.Unreachable == nil || !r.Unreachable.Since.Equal(since) || r.Unreachable.Until.Before(base.Add(15*time.Minute)) {
			t.Fatalf("reach after retention: %+v %+v", r, r.Unreachable)
		}
	}
	if p.Matched >= int64(len(inWindow)) {
		t.Fatalf("after retention %d matched, want fewer than %d", p.Matched, len(inWindow))
	}
}
