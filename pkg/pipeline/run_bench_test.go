package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/offsets"
)

// BenchmarkRun is the pipeline's cost per record, from poll to settled
// offset, with the outcomes topic off and on: a kfake broker on loopback
// (in this process: its work and allocations count too) and a sender that
// answers at once, so that what is measured is the pipeline and not HTTP
// (package deliver has its own benchmarks).
func BenchmarkRun(b *testing.B) {
	for _, topic := range []string{"", "feedback.outcomes"} {
		name := map[string]string{"": "outcomes=off", "feedback.outcomes": "outcomes=on"}[topic]
		b.Run(name, func(b *testing.B) { benchmarkRun(b, topic) })
	}
}

func benchmarkRun(b *testing.B, outcomes string) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "feedback.sent", "feedback.outcomes", "feedback.dlq"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	seeds := kgo.SeedBrokers(c.ListenAddrs()...)
	prod, err := kgo.NewClient(seeds, kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	value := eventWith("sent")
	for range b.N {
		prod.Produce(context.Background(), &kgo.Record{Topic: "feedback.sent", Value: value}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	send := sendFunc(func() deliver.Result { return deliver.Result{Verdict: deliver.Delivered, Status: 200} })
	p, err := New([]kgo.Opt{seeds}, target(nil), send, Options{Group: "bench", InputTopics: []string{"feedback.sent"},
		RetryPrefix: "feedback.retry", DLQTopic: "feedback.dlq", OutcomesTopic: outcomes, Instance: "bench/1",
		Policy: testPolicy, Concurrency: 256, ShutdownTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { done <- p.Run(ctx) }()
	for {
		if offsets.Committable(p.tracker.All())["feedback.sent"][0].Offset == int64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
