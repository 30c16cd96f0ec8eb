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
