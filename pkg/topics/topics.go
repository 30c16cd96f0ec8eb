// Package topics creates the Kafka topics feedbackd uses when they are
// missing. Existing topics are never altered: operators own them.
package topics

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
