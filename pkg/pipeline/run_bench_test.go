package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/test/testenv"
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

// benchBroker starts a kfake broker with the pipeline's topics, closed
// with the benchmark, and returns its seeds and a producer to it.
func benchBroker(b *testing.B) (kgo.Opt, *kgo.Client) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "feedback.sent", "feedback.outcomes", "feedback.dlq"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	seeds := kgo.SeedBrokers(c.ListenAddrs()...)
	prod, err := kgo.NewClient(seeds, kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(prod.Close)
	return seeds, prod
}

// benchmarkRun runs b.N records through a pipeline; more adjusts its
// options (BenchmarkRunTraced sets a Tracer).
func benchmarkRun(b *testing.B, outcomes string, more ...func(*Options)) {
	seeds, prod := benchBroker(b)
	value := eventWith("sent")
	for range b.N {
		prod.Produce(context.Background(), &kgo.Record{Topic: "feedback.sent", Value: value}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	send := sendFunc(func() deliver.Result { return deliver.Result{Verdict: deliver.Delivered, Status: 200} })
	opts := Options{Group: "bench", InputTopics: []string{"feedback.sent"},
		RetryPrefix: "feedback.retry", DLQTopic: "feedback.dlq", OutcomesTopic: outcomes, Instance: "bench/1",
		Policy: testPolicy, Concurrency: 256, ShutdownTimeout: time.Second}
	for _, m := range more {
		m(&opts)
	}
	p, err := New([]kgo.Opt{seeds}, target(nil), send, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.ProcessCPU()
	go func() { done <- p.Run(ctx) }()
	for {
		if offsets.Committable(p.tracker.All())["feedback.sent"][0].Offset == int64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	// CPU time, the broker's and the benchmark's polling included, is
	// steadier than ns/op on a shared machine.
	b.ReportMetric(float64(testenv.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkInFlight measures what the pipeline holds per delivery in
// flight, the attempt itself aside (package deliver's BenchmarkInFlight
// measures the connection's share): the record, its job and event, the
// goroutines, while a sender holds n attempts at once (B/in-flight: live
// heap and goroutine stacks after a collection, over a warmed-up
// pipeline's, less the broker's copy of the records, measured before).
func BenchmarkInFlight(b *testing.B) {
	const n = 4096
	for range b.N {
		b.ReportMetric(measureHeld(b, n, false), "B/in-flight")
	}
}

// BenchmarkWaitingForRedis measures what the pipeline holds per delivered
// job whose dedupe record Redis has not answered yet (B/waiting, measured
// as BenchmarkInFlight's), with Redis hung (SIGSTOP) while n deliveries
// are answered at once. A job that waited for the answer kept its
// goroutine and its slot (8,500 B each at a8c0384, and the deliveries
// after it waited for slots); one that hands its record over keeps its
// offset and the record's place in its batch.
func BenchmarkWaitingForRedis(b *testing.B) {
	const n = 4096
	for range b.N {
		b.ReportMetric(measureHeld(b, n, true), "B/waiting")
	}
}

// measureHeld is what the pipeline holds per job while n jobs are held: in
// their attempts, or (redisHung) delivered, waiting for Redis to record
// them.
func measureHeld(b *testing.B, n int, redisHung bool) float64 {
	seeds, prod := benchBroker(b)
	produce := func(from int) {
		for i := from; i < from+n; i++ {
			v := bytes.Replace(eventWith("sent"), []byte(`"evt-1"`), fmt.Appendf(nil, `"evt-%d"`, i), 1)
			prod.Produce(context.Background(), &kgo.Record{Topic: "feedback.sent", Value: v}, nil)
		}
		if err := prod.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	// The broker's copy of n records, to take away from what is held.
	before := testenv.LiveBytes()
	produce(0)
	stored := testenv.LiveBytes() - before

	var hold atomic.Bool
	arrived, release := make(chan struct{}, n), make(chan struct{})
	send := sendFunc(func() deliver.Result {
		if hold.Load() {
			arrived <- struct{}{}
			if !redisHung {
				<-release
			}
		}
		return deliver.Result{Verdict: deliver.Delivered, Status: 200}
	})
	opts := Options{Group: "bench", InputTopics: []string{"feedback.sent"},
		RetryPrefix: "feedback.retry", DLQTopic: "feedback.dlq", Instance: "bench/1",
		Policy: testPolicy, Concurrency: n, ShutdownTimeout: time.Second}
	var r *testenv.Redis
	if redisHung {
		r = testenv.StartRedis(b)
		// Reads wait for the hung server as long as the measure takes.
		rdb := redis.NewClient(&redis.Options{Addr: r.Addr, ReadTimeout: time.Minute})
		b.Cleanup(func() { rdb.Close() })
		store := dedupe.New(rdb, "bench:", time.Minute, nil)
		b.Cleanup(store.Close)
		opts.Dedupe = store
	}
	p, err := New([]kgo.Opt{seeds}, target(nil), send, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	settled := func(want int64) {
		for offsets.Committable(p.tracker.All())["feedback.sent"][0].Offset != want {
			time.Sleep(time.Millisecond)
		}
	}
	settled(int64(n)) // warm: the first n answered at once
	hold.Store(true)
	if redisHung {
		r.Hang(b)
	}
	base := testenv.LiveBytes()
	produce(n)
	for range n {
		<-arrived
	}
	if redisHung {
		time.Sleep(200 * time.Millisecond) // for the last ones to settle as far as they can
	}
	held := testenv.LiveBytes()
	close(release)
	if redisHung {
		r.Resume()
	}
	settled(int64(2 * n))
	// What the waiting jobs held is what Redis's answers let go (the
	// pipeline's goroutines, idle or gone, are what they were at base).
	after := testenv.LiveBytes()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if redisHung {
		return float64(held-after) / float64(n)
	}
	return float64(held-base-stored) / float64(n)
}
