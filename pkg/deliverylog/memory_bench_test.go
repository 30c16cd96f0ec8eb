package deliverylog

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackd/feedbackd/pkg/outcome"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// BenchmarkMemoryPerEntry fills a fresh redis-server with full logs
// (configs × per_config entries, with their counts and last-outcome keys)
// and reports Redis's used_memory per entry, for README "Scaling out":
//
//	go test -run '^$' -bench MemoryPerEntry ./pkg/deliverylog/
//
// Records are an event's attempt and outcome, like the pipeline's, with a
// short answer ("ok"-like, 16 bytes) and with an answer of 1 KiB (the
// default outcomes.response_bytes).
func BenchmarkMemoryPerEntry(b *testing.B) {
	for _, resp := range []int{16, 1024} {
		b.Run(fmt.Sprintf("response=%dB", resp), func(b *testing.B) {
			const configs, perConfig = 100, 1000
			r := testenv.StartRedis(b)
			ctx := context.Background()
			before := usedMemory(b, r)
			l := New(r.Client, Options{KeyPrefix: "feedbackd:", PerConfig: perConfig, Registerer: prometheus.NewRegistry()})
			now := time.Now()
			body := strings.Repeat("x", resp)
			for c := range configs {
				var recs []*outcome.Record
				for i := range perConfig / 2 {
					id := fmt.Sprintf("msg_2f1c0a9e4b7d%08d", i)
					base := outcome.Record{Time: now, Instance: "feedbackd-7d9f8c6b5-x2x4q/1", WebhookID: id, EventID: id,
						RequestID: "req-" + id, Org: fmt.Sprintf("%08X@AdobeOrg", c), Sandbox: "prod", Channel: "email",
						Status: "delivered", CampaignID: "a7b2c3d4-e5f6-4789-a012-b3c4d5e6f7a8", Attempt: 1, HTTPCode: 200,
						Source: "feedback.delivered/3/12345678"}
					a, o := base, base
					a.Type, a.Outcome, a.DurationMs, a.Response = outcome.TypeAttempt, "success", outcome.Millis(42*time.Millisecond), body
					o.Type, o.Outcome = outcome.TypeOutcome, "delivered"
					recs = append(recs, &a, &o)
				}
				l.write(ctx, recs)
			}
			after := usedMemory(b, r)
			entries := configs * perConfig
			if n := r.Client.XLen(ctx, "feedbackd:log:{00000000@AdobeOrg/prod}").Val(); n != perConfig {
				b.Fatalf("%d entries in a log, want %d", n, perConfig)
			}
			for b.Loop() {
			}
			b.ReportMetric(float64(after-before)/float64(entries), "bytes/entry")
			b.ReportMetric(float64(after-before)/float64(configs)/(1<<20), "MiB/config")
		})
	}
}

func usedMemory(b *testing.B, r *testenv.Redis) int64 {
	b.Helper()
	info, err := r.Client.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

// BenchmarkWrite writes batches of 500 records (an attempt and an outcome
// each, over 50 configs) to a redis-server in one round trip each, as Run
// does, and reports the Redis CPU each record costs.
func BenchmarkWrite(b *testing.B) {
	r := testenv.StartRedis(b)
	l := New(r.Client, Options{KeyPrefix: "feedbackd:", Registerer: prometheus.NewRegistry()})
	now := time.Now()
	var batch []*outcome.Record
	for i := range 250 {
		batch = append(batch, event(fmt.Sprintf("org%d", i%50), fmt.Sprint("msg_", i), now, 200)...)
	}
	cpu0 := redisCPU(b, r)
	n := 0
	for b.Loop() {
		l.write(context.Background(), batch)
		n += len(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
	b.ReportMetric((redisCPU(b, r)-cpu0)*1e6/float64(n), "redis-µs/record")
}

// redisCPU is the CPU seconds the server used (INFO cpu: sys + user).
func redisCPU(b *testing.B, r *testenv.Redis) float64 {
	b.Helper()
	info, err := r.Client.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	return sum
}
