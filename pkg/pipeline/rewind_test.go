package pipeline

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
)

// When the Kafka client reads a partition again from an offset it read
// already, dispatch waits for the first read's records in flight (so that
// their deliveries are recorded before dedupe is asked about the re-read
// copies), drops its held retry records, and the re-read records are
// dedupe-checked.
func TestRewindDrainsTheFirstRead(t *testing.T) {
	p, err := New([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, nil, nil, Options{Group: "test", ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.cl.Close()
	const topic = "feedback.retry.1s"
	p.tracker.Assign(map[string][]int32{topic: {0}})
	first := p.tracker.Get(topic, 0)
	first.Fetched(2)
	for o := int64(0); o < 3; o++ {
		p.tracker.Add(topic, 0, o, 0)
	}
	first.Settle(0)
	// 1 is in flight; 2 is a retry record held until it is due.
	if !p.holds.hold(first, job{rec: &kgo.Record{Topic: topic, Offset: 2}, part: first, state: &header.Retry{DueAt: time.Now().Add(time.Hour)}}) {
		t.Fatal("the retry record was not held")
	}
	settled := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(settled)
		first.Settle(1)
	}()

	start := time.Now()
	part, retired := p.tracker.Add(topic, 0, 0, 1) // the client rewound to 0
	if retired != first {
		t.Fatalf("retired %p, want %p", retired, first)
	}
	p.rewound(context.Background(), retired, &kgo.Record{Topic: topic, Partition: 0, Offset: 0})
	select {
	case <-settled:
	default:
		t.Fatalf("rewound returned after %s, before the record in flight settled", time.Since(start))
	}
	if n := first.Unsettled(); n != 0 {
		t.Errorf("%d records of the first read neither settled nor abandoned (the held one must be dropped)", n)
	}
	var m dto.Metric
	if err := p.metrics.rewinds.Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("feedbackd_partition_rewinds_total = %v (%v), want 1", m.GetCounter().GetValue(), err)
	}
	for _, c := range []struct {
		offset int64
		want   bool
	}{{0, true}, {2, true}, {3, false}} {
		j := &job{rec: &kgo.Record{Topic: "feedback.sent", Offset: c.offset}, part: part}
		if got := p.mayBeDelivered(j); got != c.want {
			t.Errorf("after the rewind, mayBeDelivered(record %d) = %v, want %v", c.offset, got, c.want)
		}
	}
}
