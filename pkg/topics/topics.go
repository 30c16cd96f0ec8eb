// Package topics creates the Kafka topics feedbackd uses when they are
// missing. Existing topics are never altered: operators own them.
package topics

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Spec describes one topic.
type Spec struct {
	Name       string
	Partitions int32 // -1: broker default
	Configs    map[string]*string
}

// Compacted returns the configs of a compacted topic.
func Compacted() map[string]*string {
	c := "compact"
	return map[string]*string{"cleanup.policy": &c}
}

// Ensure creates the topics of specs that do not exist yet, with the
// broker's default replication factor.
func Ensure(ctx context.Context, adm *kadm.Client, specs ...Spec) error {
	for _, s := range specs {
		resp, err := adm.CreateTopic(ctx, s.Partitions, -1, s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Backlog returns the end offset of every partition of topic that holds
// records: a reader from the start has read what the topic held when
// Backlog was called once it reaches these. Partitions that retention
// emptied (start offset = end offset) are left out. It suits topics whose
// last records are never removed while older ones remain, which is true of
// delete-policy topics; on a compacted topic use a barrier record instead.
func Backlog(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, e.Partition); ok && s.Offset < e.Offset {
			out[e.Partition] = e.Offset
		}
	})
	return out, nil
}

// WriteBarriers writes a tombstone with key barrier to every partition of
// topic (cl must use kgo.ManualPartitioner) and returns the partitions, all
// of whose barriers are still to be read. A reader that has read its own
// barrier has read everything written before it, which end offsets cannot
// tell on a compacted topic (its last records may be gone) nor on a topic
// written in transactions (its last offsets may be commit markers). Being
// tombstones, barriers disappear after the topic's delete.retention.ms.
func WriteBarriers(ctx context.Context, cl *kgo.Client, topic, barrier string) (map[int32]bool, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", topic, err)
	}
	behind := map[int32]bool{}
	var recs []*kgo.Record
	ends.Each(func(o kadm.ListedOffset) {
		behind[o.Partition] = true
		recs = append(recs, &kgo.Record{Topic: topic, Partition: o.Partition, Key: []byte(barrier)})
	})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("write barrier to %s: %w", topic, err)
	}
	return behind, nil
}

// ReadAll reads topic from its start to a barrier it writes, committed
// records only, and calls fn for every record that is not a barrier (keys
// starting with barrierPrefix). kafkaOpts carry the seeds.
func ReadAll(ctx context.Context, kafkaOpts []kgo.Opt, topic, barrierPrefix string, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(append(slices.Clone(kafkaOpts),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	barrier := barrierPrefix + rand.Text()
	behind, err := WriteBarriers(ctx, cl, topic, barrier)
	if err != nil {
		return err
	}
	return ReadUntil(ctx, cl, topic, func() bool { return len(behind) == 0 }, func(r *kgo.Record) bool {
		switch {
		case string(r.Key) == barrier:
			delete(behind, r.Partition)
		case !strings.HasPrefix(string(r.Key), barrierPrefix):
			fn(r)
		}
		return true
	})
}

// ReadUntil polls cl, a client consuming topic, and calls fn with each
// record fetched, until done reports true or fn returns false. It asks
// done before every poll, never during a fetch: the records of the fetch
// in which the reader reached its end (end offsets, barriers) still reach
// fn, which passes over those past the end; and a reader with nothing to
// read does not poll at all. Once fn returns false, the rest of its fetch
// is dropped. ReadUntil returns nil then, ctx's error if ctx ends first, or
// the first fetch error as "read <topic>: <error>".
func ReadUntil(ctx context.Context, cl *kgo.Client, topic string, done func() bool, fn func(*kgo.Record) bool) error {
	for !done() {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		stop := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !stop && !fn(r) {
				stop = true
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}
