package replay

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
)

// barrierPrefix starts the keys of read barriers in the marker topic.
const barrierPrefix = "!replay-barrier/"

// dlqSource is what a replay reads: the dead letters that pass its filter.
type dlqSource struct {
	id       string
	opts     Options
	filter   dlq.Filter
	replayed map[string]bool // dead letters with a marker
}

var _ source = (*dlqSource)(nil)

func newDLQSource(req Request, id string, opts Options, now time.Time) (*dlqSource, error) {
	f, err := req.Filter(now)
	if err != nil {
		return nil, err
	}
	return &dlqSource{id: id, opts: opts, filter: f, replayed: map[string]bool{}}, nil
}

func (s *dlqSource) topics() []string  { return []string{s.opts.DLQTopic} }
func (s *dlqSource) reset() kgo.Offset { return kgo.NewOffset().AtStart() }

// bounds: from the start of the topic to its end.
func (s *dlqSource) bounds(ctx context.Context, adm *kadm.Client) (starts, limits map[tp]int64, _ []TopicReach, _ error) {
	topic := s.opts.DLQTopic
	first, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = first.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, limits = map[tp]int64{}, map[tp]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		k := tp{topic, e.Partition}
		limits[k] = e.Offset
		if f, ok := first.Lookup(topic, e.Partition); ok {
			starts[k] = f.Offset
		}
	})
	return starts, limits, nil, nil
}

// prepare creates the marker topic if it is missing (feedbackd creates it
// at start-up; a replay may run against an older deployment) and reads the
// markers.
func (s *dlqSource) prepare(ctx context.Context, kafkaOpts []kgo.Opt) error {
	cl, err := kgo.NewClient(kafkaOpts...)
	if err != nil {
		return err
	}
	err = topics.Ensure(ctx, kadm.NewClient(cl), topics.Spec{Name: s.opts.MarkerTopic, Partitions: 1, Configs: topics.Compacted()})
	cl.Close()
	if err != nil {
		return err
	}
	err = topics.ReadAll(ctx, kafkaOpts, s.opts.MarkerTopic, barrierPrefix, func(rec *kgo.Record) {
		s.replayed[string(rec.Key)] = true
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", s.opts.MarkerTopic, err)
	}
	return nil
}

// consider returns the records that replay a dead letter: the
// re-injection and its marker, or nil. A dead letter that cannot go back
// where it came from fails the run, rather than be skipped and committed
// past.
func (s *dlqSource) consider(rec *kgo.Record, c *Progress) ([]*kgo.Record, error) {
	c.Scanned++
	d := dlq.FromKafka(rec)
	if d.Err != nil || !s.filter.Match(d) {
		return nil, nil
	}
	c.Matched++
	topic, _, _ := strings.Cut(d.Source, "/")
	switch {
	case s.replayed[d.Coordinates()], // replayed already, by some job
		header.Get(d.Headers, header.ReplayJob) == s.id: // this job's own replay failed again
		c.Skipped++
		return nil, nil
	case d.ValueOmitted > 0: // nothing to re-inject: the original is at dlq-source
		c.Skipped++
		s.opts.Logger.Warn("dead letter cannot be replayed: its value was left out", "dlq", d.Coordinates(),
			"webhook-id", d.WebhookID, "source", d.Source)
		return nil, nil
	case !slices.Contains(s.opts.InputTopics, topic):
		return nil, fmt.Errorf("dead letter %s came from %q, which is not an input topic (%s): pass the deployment's input topics",
			d.Coordinates(), topic, strings.Join(s.opts.InputTopics, ", "))
	}
	// A replay-count that cannot be read (feedbackd writes none) counts as
	// no earlier replay.
	prev, _ := strconv.Atoi(header.Get(d.Headers, header.ReplayCount))
	h := header.Replay{
		Job: s.id, Of: d.Coordinates(), Count: max(prev, 0) + 1,
		PriorAttempts: d.Attempts, FirstAttemptAt: d.FirstAttemptAt,
	}.Append(append(header.Foreign(d.Headers), kgo.RecordHeader{Key: header.WebhookID, Value: []byte(d.WebhookID)}))
	return []*kgo.Record{
		{Topic: topic, Key: d.Key, Value: d.Value, Headers: h},
		{Topic: s.opts.MarkerTopic, Key: []byte(d.Coordinates()), Value: []byte(s.id)},
	}, nil
}
