package topics

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/test/testenv"
)

// produce writes n records with keys "0".."n-1" to each of topic's two
// partitions.
func produce(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, n int) {
	t.Helper()
	for p := int32(0); p < 2; p++ {
		for i := range n {
			r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(strconv.Itoa(i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestReadUntil(t *testing.T) {
	k := testenv.StartKafka(t)
	ctx := testenv.Context(t, 30*time.Second)
	seeds := kgo.SeedBrokers(k.Seeds...)
	prod, err := kgo.NewClient(seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := Ensure(ctx, kadm.NewClient(prod), Spec{Name: "full", Partitions: 2}, Spec{Name: "empty", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, prod, "full", 5)

	cases := []struct {
		name   string
		topic  string
		stopAt int  // fn returns false at this record (0: never)
		cancel bool // the context has ended
		want   int  // records read to the end offsets
		err    error
	}{
		{name: "to the end offsets", topic: "full", want: 10},
		{name: "nothing to read never polls", topic: "empty", want: 0},
		{name: "fn stops", topic: "full", stopAt: 3, want: 3},
		{name: "context ended", topic: "full", cancel: true, err: context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := kgo.NewClient(seeds, kgo.ConsumeTopics(c.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			left, err := Backlog(ctx, kadm.NewClient(cl), c.topic)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctx
			if c.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			read := 0
			err = ReadUntil(ctx, cl, c.topic, func() bool { return len(left) == 0 }, func(r *kgo.Record) bool {
				if end, ok := left[r.Partition]; !ok || r.Offset >= end {
					return true
				} else if r.Offset+1 >= end {
					delete(left, r.Partition)
				}
				read++
				return read != c.stopAt
			})
			if !errors.Is(err, c.err) {
				t.Fatalf("ReadUntil: %v, want %v", err, c.err)
			}
			if c.err == nil && read != c.want {
				t.Fatalf("read %d records, want %d", read, c.want)
			}
		})
	}
}

func TestReadAllSkipsBarriers(t *testing.T) {
	k := testenv.StartKafka(t)
	ctx := testenv.Context(t, 30*time.Second)
	opts := []kgo.Opt{kgo.SeedBrokers(k.Seeds...)}
	prod, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := Ensure(ctx, kadm.NewClient(prod), Spec{Name: "markers", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, prod, "markers", 2)
	for range 2 { // earlier readers' barriers, which later reads pass over
		if err := ReadAll(ctx, opts, "markers", "barrier:", func(*kgo.Record) {}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := ReadAll(ctx, opts, "markers", "barrier:", func(r *kgo.Record) { keys = append(keys, string(r.Key)) }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("ReadAll read %q, want the 4 records and no barrier", keys)
	}
}
