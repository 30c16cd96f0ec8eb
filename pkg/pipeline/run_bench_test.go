package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/webhook"
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
	var send answeredAtOnce
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

// answeredAtOnce delivers every attempt, answered within Start's brief
// wait: done runs on the job's goroutine.
type answeredAtOnce struct{}

func (answeredAtOnce) Start(_ context.Context, _ *webhook.Target, _ string, _ []byte, done func(deliver.Result)) {
	done(deliver.Result{Verdict: deliver.Delivered, Status: 200})
}

// BenchmarkInFlight measures what the pipeline holds per delivery in
// flight while n attempts are held at once (B/in-flight: live heap and
// goroutine stacks after a collection, less what is left once the attempts
// are answered and settled: the records stay in the broker, connections
// idle in the pool; stack-B/in-flight is the stacks' part, over a warmed-up
// pipeline's). With a sender that holds them ("held"), that is the
// pipeline's own share, the attempt aside: the record, its job and event,
// the goroutines. With the real sender ("http", deliver.Client against a
// receiver in a process of its own that holds every request), it is all of
// it, connections included, as in feedbackd: before Sender.Start, the job's
// goroutine (its stack grown by the stages) waited for every answer.
func BenchmarkInFlight(b *testing.B) {
	const n = 4096
	report := func(b *testing.B, h holder, configs Configs) {
		for range b.N {
			m := measureHeld(b, n, h, configs, false)
			b.ReportMetric(m.bytes, "B/in-flight")
			b.ReportMetric(m.stack, "stack-B/in-flight")
		}
	}
	b.Run("held", func(b *testing.B) { report(b, heldSender(true), target(nil)) })
	b.Run("http", func(b *testing.B) {
		recv := testenv.StartHoldReceiver(b, false)
		c := deliver.New(deliver.Options{Timeout: time.Minute, Guard: &netguard.Guard{AllowPrivate: true},
			UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: n})
		b.Cleanup(c.Close)
		report(b, holder{sender: c, arrived: recv.Arrived, release: recv.Release}, urlTarget(b, recv.URL))
	})
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
		b.ReportMetric(measureHeld(b, n, heldSender(false), target(nil), true).bytes, "B/waiting")
	}
}

// holder is a sender whose attempts a measure holds.
type holder struct {
	sender  Sender
	arrived func(n int) // waits until n more attempts are held
	release func()      // answers the attempts held
}

// heldSender answers every attempt with 200 once it is released; without
// hold, at once.
func heldSender(hold bool) holder {
	var mu sync.Mutex
	arrived, release := make(chan struct{}, 1<<16), make(chan struct{})
	send := sendFunc(func() deliver.Result {
		mu.Lock()
		wait := release
		mu.Unlock()
		arrived <- struct{}{}
		if hold {
			<-wait
		}
		return deliver.Result{Verdict: deliver.Delivered, Status: 200}
	})
	return holder{
		sender: send,
		arrived: func(n int) {
			for range n {
				<-arrived
			}
		},
		release: func() {
			mu.Lock()
			close(release)
			release = make(chan struct{})
			mu.Unlock()
		},
	}
}

// urlTarget is every event's config, for an endpoint at url.
func urlTarget(b *testing.B, url string) configsFunc {
	secret, err := signature.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	var tg *webhook.Target
	target(func(c *webhook.Config) {
		c.URL = url
		tg, err = webhook.NewTarget(&webhook.Stored{Config: *c, Secrets: []webhook.Secret{{Value: secret}}})
	})("org", "sandbox")
	if err != nil {
		b.Fatal(err)
	}
	return func(org, sandbox string) (*webhook.Target, error) { return tg, nil }
}

// perJob is what the pipeline held per job in a measure, in bytes: live
// heap and stacks, and the stacks' part.
type perJob struct{ bytes, stack float64 }

// measureHeld is what the pipeline holds per job while h holds n attempts,
// or (redisHung) while n delivered jobs wait for Redis to record them.
func measureHeld(b *testing.B, n int, h holder, configs Configs, redisHung bool) perJob {
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
	produce(0)

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
	p, err := New([]kgo.Opt{seeds}, configs, h.sender, opts)
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
	// Warm: the first n attempts, answered together.
	h.arrived(n)
	h.release()
	settled(int64(n))
	if redisHung {
		r.Hang(b)
	}
	stack0 := testenv.StackBytes()
	produce(n)
	h.arrived(n)
	if redisHung {
		time.Sleep(200 * time.Millisecond) // for the last ones to settle as far as they can
	}
	holding, stack1 := testenv.LiveBytes(), testenv.StackBytes()
	h.release()
	if redisHung {
		r.Resume()
	}
	settled(int64(2 * n))
	// What the jobs held is what their answers let go: the broker keeps
	// the records, the pool the connections.
	after := testenv.LiveBytes()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return perJob{bytes: float64(holding-after) / float64(n), stack: float64(stack1-stack0) / float64(n)}
}
