package dlq

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// Scan reads every dead letter once and returns, also when retention has
// emptied a partition (its end offset is then above 0 but nothing is left).
func TestScanSkipsEmptiedPartitions(t *testing.T) {
	k := testenv.StartKafka(t)
	ctx := testenv.Context(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := topics.Ensure(ctx, adm, topics.Spec{Name: "dlq", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	e := header.DeadLetter{Reason: ReasonRejected, WebhookID: "w", FailedAt: time.Now()}
	for p := int32(0); p < 2; p++ {
		for range 3 {
			r := ToKafka("dlq", e, &kgo.Record{Value: []byte("{}")})
			r.Partition = p
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Partition 1 loses everything to retention; partition 2 never had anything.
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"dlq": {1: {Topic: "dlq", Partition: 1, At: 3}}}); err != nil {
		t.Fatal(err)
	}
	var got []Record
	if err := Scan(ctx, []kgo.Opt{kgo.SeedBrokers(k.Seeds...)}, "dlq", func(r Record) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("scanned %d records, want the 3 of partition 0", len(got))
	}
	for _, r := range got {
		if r.Err != nil || r.Reason != ReasonRejected || r.Partition != 0 {
			t.Fatalf("record %+v", r)
		}
	}
}
