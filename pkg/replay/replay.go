package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// States of a job.
const (
	StateRunning     = "running"
	StateDone        = "done"
	StateInterrupted = "interrupted" // stopped early; running it again resumes
	StateFailed      = "failed"
)

// Progress reports a job. Counts are of this run; the job's position
// across runs is the committed offset of its consumer group.
type Progress struct {
	ID        string    `json:"id"`
	Request   Request   `json:"request"`
	State     string    `json:"state"`
	Total     int64     `json:"total"`    // dead letters left to read when the run started
	Scanned   int64     `json:"scanned"`  // dead letters read
	Matched   int64     `json:"matched"`  // ... that pass the filter
	Replayed  int64     `json:"replayed"` // ... re-injected (0 in a dry run: Matched - Skipped would be)
	Skipped   int64     `json:"skipped"`  // ... matched but not replayed: value left out, no input topic, replayed already (superseded), or this job's own replay failed again
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Error     string    `json:"error,omitempty"`
}

// Options configure a run.
type Options struct {
	DLQTopic    string
	InputTopics []string // where dead letters may be re-injected (their source topic)
	GroupPrefix string   // the job's consumer group and transactional id: GroupPrefix + ID
	// Progress, if set, is called after each batch and at the end, from
	// the goroutine that called Run.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Run runs the job of req until every dead letter that was in the topic
// when it started has been read, or ctx ends (then the open transaction is
// aborted and the job can be resumed). kafkaOpts carry seeds, TLS and SASL.
// It returns the final progress; its error says why a run failed.
func Run(ctx context.Context, kafkaOpts []kgo.Opt, req Request, opts Options) (Progress, error) {
	now := time.Now()
	p := Progress{ID: req.ID(), Request: req, State: StateRunning, StartedAt: now, UpdatedAt: now}
	filter, err := req.Filter(now)
	if err != nil {
		return fail(p, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	group := opts.GroupPrefix + p.ID

	from, ends, err := position(ctx, kafkaOpts, opts.DLQTopic, group)
	if err != nil {
		return fail(p, err)
	}
	for part, end := range ends {
		p.Total += end - from[part]
	}
	report := func() {
		p.UpdatedAt = time.Now()
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	report()
	if len(ends) == 0 {
		p.State = StateDone
		report()
		return p, nil
	}

	superseded, err := supersededDeadLetters(ctx, kafkaOpts, opts.DLQTopic)
	if err != nil {
		return fail(p, err)
	}
	r := &runner{req: req, id: p.ID, filter: filter, opts: opts, ends: ends, superseded: superseded, progress: &p, report: report}
	if req.DryRun {
		err = r.dryRun(ctx, kafkaOpts, from)
	} else {
		err = r.replay(ctx, kafkaOpts, group)
	}
	switch {
	case ctx.Err() != nil:
		p.State = StateInterrupted
	case err != nil:
		return fail(p, err)
	default:
		p.State = StateDone
	}
	report()
	return p, nil
}

func fail(p Progress, err error) (Progress, error) {
	p.State, p.Error, p.UpdatedAt = StateFailed, err.Error(), time.Now()
	return p, err
}

// position returns, for each partition of the dead-letter topic with
// records left for the job, where the job continues and where this run
// stops (the end offset now).
func position(ctx context.Context, kafkaOpts []kgo.Opt, topic, group string) (from, ends map[int32]int64, err error) {
	cl, err := kgo.NewClient(kafkaOpts...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	endOffsets, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = endOffsets.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) { // a job never run before
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("progress of %s: %w", group, err)
	}
	from, ends = map[int32]int64{}, map[int32]int64{}
	endOffsets.Each(func(e kadm.ListedOffset) {
		at := int64(0)
		if s, ok := starts.Lookup(topic, e.Partition); ok {
			at = s.Offset
		}
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.At > at {
			at = c.At
		}
		if at < e.Offset {
			from[e.Partition], ends[e.Partition] = at, e.Offset
		}
	})
	return from, ends, nil
}

type runner struct {
	req    Request
	id     string
	filter dlq.Filter
	opts   Options
	ends   map[int32]int64 // partitions still to read up to this offset
	// superseded are dead letters a later dead letter of the same event
	// replaced (it was replayed and failed again): replaying them would
	// deliver the event twice.
	superseded map[string]bool
	progress   *Progress
	report     func()
	paced      int64 // records re-injected so far, for --rate
	start      time.Time
}

// batchSize keeps each transaction to about a second of work at the
// requested rate, well inside the transaction timeout.
func (r *runner) batchSize() int {
	if r.req.Rate > 0 {
		return int(min(max(r.req.Rate, 1), 500))
	}
	return 500
}

func (r *runner) replay(ctx context.Context, kafkaOpts []kgo.Opt, group string) error {
	sess, err := kgo.NewGroupTransactSession(append(slices.Clone(kafkaOpts),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(r.opts.DLQTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(group),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		// One member per job: a run started after a crash replaces the dead
		// member at once instead of waiting for its session to time out.
		kgo.InstanceID(group),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	r.start = time.Now()

	for len(r.ends) > 0 {
		fetches := sess.PollRecords(ctx, r.batchSize())
		if ctx.Err() != nil {
			return r.abort(sess)
		}
		if err := fetchError(fetches); err != nil {
			return err
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		var batch Progress
		var produceErr atomic.Pointer[error]
		fetches.EachRecord(func(rec *kgo.Record) {
			if ctx.Err() != nil {
				return
			}
			out := r.consider(rec, &batch)
			if out == nil || !r.pace(ctx) {
				return
			}
			batch.Replayed++
			sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					produceErr.CompareAndSwap(nil, &err)
				}
			})
		})
		if ctx.Err() != nil {
			return r.abort(sess)
		}
		// End flushes: every produce has answered once it returns, and a
		// failed one makes the transaction abort.
		committed, err := sess.End(ctx, kgo.TryCommit)
		if perr := produceErr.Load(); perr != nil {
			return fmt.Errorf("re-inject (committed: %v): %w", committed, *perr)
		}
		if err != nil {
			return fmt.Errorf("commit replay batch: %w", err)
		}
		if !committed { // a rebalance aborted it: the batch is read again
			continue
		}
		r.progress.Scanned += batch.Scanned
		r.progress.Matched += batch.Matched
		r.progress.Replayed += batch.Replayed
		r.progress.Skipped += batch.Skipped
		fetches.EachRecord(func(rec *kgo.Record) { r.reached(rec) })
		r.report()
	}
	return nil
}

func (r *runner) abort(sess *kgo.GroupTransactSession) error {
	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := sess.End(actx, kgo.TryAbort)
	return err
}

// dryRun reads what the job would read, from its position, without a
// consumer group and without writing anything.
func (r *runner) dryRun(ctx context.Context, kafkaOpts []kgo.Opt, from map[int32]int64) error {
	parts := map[int32]kgo.Offset{}
	for p, at := range from {
		parts[p] = kgo.NewOffset().At(at)
	}
	cl, err := kgo.NewClient(append(slices.Clone(kafkaOpts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.opts.DLQTopic: parts}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(r.ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fetchError(fetches); err != nil {
			return err
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if end, ok := r.ends[rec.Partition]; ok && rec.Offset < end {
				r.consider(rec, r.progress)
			}
			r.reached(rec)
		})
		r.report()
	}
	return nil
}

// consider counts a dead letter into c (scanned, matched, skipped) and
// returns the record that re-injects it, or nil.
func (r *runner) consider(rec *kgo.Record, c *Progress) *kgo.Record {
	c.Scanned++
	d := dlq.FromKafka(rec)
	if d.Err != nil || !r.filter.Match(d) {
		return nil
	}
	c.Matched++
	topic, _, _ := strings.Cut(d.Source, "/")
	switch {
	case header(d.Headers, dlq.HeaderReplayJob) == r.id, // our own replay failed again
		r.superseded[d.Coordinates()]: // replayed already; its newest dead letter stands for it
		c.Skipped++
		return nil
	case d.ValueOmitted > 0, !slices.Contains(r.opts.InputTopics, topic):
		c.Skipped++
		r.opts.Logger.Warn("dead letter cannot be replayed", "dlq", d.Coordinates(), "webhook-id", d.WebhookID,
			"value_omitted", d.ValueOmitted > 0, "source", d.Source)
		return nil
	}
	count, _ := strconv.Atoi(header(d.Headers, dlq.HeaderReplayCount))
	first := ""
	if !d.FirstAttemptAt.IsZero() {
		first = d.FirstAttemptAt.UTC().Format(time.RFC3339)
	}
	h := append(dlq.OriginalHeaders(d.Headers),
		kgo.RecordHeader{Key: dlq.HeaderWebhookID, Value: []byte(d.WebhookID)},
		kgo.RecordHeader{Key: dlq.HeaderReplayJob, Value: []byte(r.id)},
		kgo.RecordHeader{Key: dlq.HeaderReplayOf, Value: []byte(d.Coordinates())},
		kgo.RecordHeader{Key: dlq.HeaderReplayCount, Value: []byte(strconv.Itoa(count + 1))},
		kgo.RecordHeader{Key: dlq.HeaderReplayPriorAttempts, Value: []byte(strconv.Itoa(d.Attempts))},
		kgo.RecordHeader{Key: dlq.HeaderReplayFirstAttemptAt, Value: []byte(first)},
	)
	return &kgo.Record{Topic: topic, Key: d.Key, Value: d.Value, Headers: h}
}

// supersededDeadLetters reads the whole dead-letter topic once and returns
// the coordinates of the dead letters that a replay re-injected and that
// failed again (the newer dead letter's replay-of header names them).
func supersededDeadLetters(ctx context.Context, kafkaOpts []kgo.Opt, topic string) (map[string]bool, error) {
	out := map[string]bool{}
	err := dlq.Scan(ctx, kafkaOpts, topic, func(r dlq.Record) bool {
		if of := header(r.Headers, dlq.HeaderReplayOf); of != "" {
			out[of] = true
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	return out, nil
}

// reached notes that the run read rec; a partition is done at its end.
func (r *runner) reached(rec *kgo.Record) {
	if end, ok := r.ends[rec.Partition]; ok && rec.Offset+1 >= end {
		delete(r.ends, rec.Partition)
	}
}

// pace waits so that re-injections do not exceed Rate per second.
func (r *runner) pace(ctx context.Context) bool {
	r.paced++
	if r.req.Rate <= 0 {
		return true
	}
	due := r.start.Add(time.Duration(float64(r.paced-1) / r.req.Rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func fetchError(fs kgo.Fetches) error {
	var err error
	fs.EachError(func(t string, p int32, e error) {
		if err == nil && !errors.Is(e, context.Canceled) {
			err = fmt.Errorf("read %s/%d: %w", t, p, e)
		}
	})
	return err
}

func header(hs []kgo.RecordHeader, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
