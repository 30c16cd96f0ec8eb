package dlq

import (
	"context"
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
)

// Record is one dead letter as read back from the topic, with the tenant
// and event fields filters look at.
type Record struct {
	header.DeadLetter
	eventFields
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
	Err       error // set when the dlq headers cannot be read
}

// Scan reads topic from its start up to the end offsets it has when Scan
// begins, calling fn for each record until fn returns false. kafkaOpts
// carry the seeds; Scan uses its own client and no consumer group, so it
// never moves feedbackd's offsets.
func Scan(ctx context.Context, kafkaOpts []kgo.Opt, topic string, fn func(Record) bool) error {
	cl, err := kgo.NewClient(append(kafkaOpts,
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	left, err := topics.Backlog(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return err
	}
	return topics.ReadUntil(ctx, cl, topic, func() bool { return len(left) == 0 }, func(r *kgo.Record) bool {
		end, ok := left[r.Partition]
		if !ok || r.Offset >= end {
			return true
		}
		if r.Offset+1 >= end {
			delete(left, r.Partition)
		}
		return fn(FromKafka(r))
	})
}

// FromKafka reads a dead letter from a record of the dead-letter topic.
func FromKafka(r *kgo.Record) Record {
	e, err := header.ParseDeadLetter(r.Headers)
	return Record{
		DeadLetter: e, eventFields: readEventFields(r.Key, r.Value),
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Key: r.Key, Value: r.Value, Headers: r.Headers, Err: err,
	}
}

// Coordinates are the record's "topic/partition/offset".
func (r Record) Coordinates() string { return header.Source(r.Topic, r.Partition, r.Offset) }

// Entry is a dead letter as the admin API shows it (GET /v1/dlq) and the
// console reads it: feedbackctl dlq list -o json's shape, without the
// partition and offset apart (DeadLetter is "topic/partition/offset").
type Entry struct {
	DeadLetter     string            `json:"deadLetter"` // topic/partition/offset
	Reason         string            `json:"reason"`
	WebhookID      string            `json:"webhookId"`
	Org            string            `json:"org"`
	Sandbox        string            `json:"sandbox"`
	Channel        string            `json:"channel"`
	Status         string            `json:"status"`
	Attempts       int               `json:"attempts"`
	LastStatus     int               `json:"lastStatus"`
	LastError      string            `json:"lastError"`
	FirstAttemptAt time.Time         `json:"firstAttemptAt,omitzero"`
	FailedAt       time.Time         `json:"failedAt"`
	Source         string            `json:"source"`
	Key            string            `json:"key"`
	Headers        map[string]string `json:"headers"`
	Value          any               `json:"value"` // the event's JSON, or its text if it is not JSON
	Error          string            `json:"error,omitempty"`
}

// Entry is r as the admin API shows it.
func (r Record) Entry() Entry {
	d := Entry{DeadLetter: r.Coordinates(), Reason: r.Reason, WebhookID: r.WebhookID, Org: r.Org, Sandbox: r.Sandbox,
		Channel: r.Channel, Status: r.Status, Attempts: r.Attempts, LastStatus: r.LastStatus, LastError: r.LastError,
		FirstAttemptAt: r.FirstAttemptAt, FailedAt: r.FailedAt, Source: r.Source, Key: string(r.Key), Headers: map[string]string{}}
	for _, h := range r.Headers {
		d.Headers[h.Key] = string(h.Value)
	}
	if json.Valid(r.Value) {
		d.Value = json.RawMessage(r.Value)
	} else {
		d.Value = string(r.Value)
	}
	if r.Err != nil {
		d.Error = r.Err.Error()
	}
	return d
}
