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

	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/topics"
)

// States of a job.
const (
	StateRunning     = "running"
	StateDone        = "done"
	StateInterrupted = "interrupted" // stopped early; running it again resumes
	StateFailed      = "failed"
)

// Progress reports a run of a job. Counts are of this run; the job's
// position across runs is the committed offset of its consumer group.
type Progress struct {
	ID        string    `json:"id"`
	Request   Request   `json:"request"`
	State     string    `json:"state"`
	Total     int64     `json:"total"`    // dead letters left to read when the run started
	Scanned   int64     `json:"scanned"`  // dead letters read
	Matched   int64     `json:"matched"`  // ... that pass the filter
	Replayed  int64     `json:"replayed"` // ... re-injected (in a dry run: that would be)
	Skipped   int64     `json:"skipped"`  // ... matched but not re-injected: see Skip*
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Error     string    `json:"error,omitempty"`
}

// Options configure a run.
type Options struct {
	DLQTopic    string
	MarkerTopic string   // compacted topic of replayed dead letters; default DLQTopic + ".replayed"
	InputTopics []string // where dead letters may be re-injected (their source topic)
	GroupPrefix string   // the job's consumer group and transactional id: GroupPrefix + ID
	// Progress, if set, is called after each batch and at the end, from
	// the goroutine that called Run.
	Progress func(Progress)
	Logger   *slog.Logger
}

// barrierPrefix starts the keys of read barriers in the marker topic.
const barrierPrefix = "!replay-barrier/"

// Run runs the job of req until every dead letter that was in the topic
// when it started has been read, or ctx ends (the open transaction is then
// aborted, and running the job again resumes it). kafkaOpts carry seeds,
// TLS and SASL (kafkaconn.Config.Opts). It returns the final progress; its error says why a run
// failed.
//
// Each matching dead letter is re-injected at most once, by any job: its
// re-injection and a marker naming it are written in one transaction, and
// dead letters with a marker are skipped. A dead letter of an event that
// was replayed and failed again is a new one, and can be replayed.
func Run(ctx context.Context, kafkaOpts []kgo.Opt, req Request, opts Options) (Progress, error) {
	now := time.Now()
	p := Progress{ID: req.ID(), Request: req, State: StateRunning, StartedAt: now, UpdatedAt: now}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MarkerTopic == "" {
		opts.MarkerTopic = opts.DLQTopic + ".replayed"
	}
	report := func() {
		p.UpdatedAt = time.Now()
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	r := &runner{req: req, id: p.ID, opts: opts, progress: &p, report: report, replayed: map[string]bool{}}
	err := r.run(ctx, kafkaOpts, now)
	switch {
	case ctx.Err() != nil:
		p.State = StateInterrupted
	case err != nil:
		p.State, p.Error = StateFailed, err.Error()
	default:
		p.State = StateDone
	}
	report()
	if p.State == StateFailed {
		return p, err
	}
	return p, nil
}

type runner struct {
	req      Request
	id       string
	opts     Options
	progress *Progress
	report   func()
	filter   dlq.Filter
	limits   map[int32]int64 // every partition: the end offset when the run started
	ends     map[int32]int64 // partitions still to read, up to their limit
	replayed map[string]bool // dead letters with a marker
	paced    int64
	start    time.Time // first re-injection: the pacing clock starts there
}

func (r *runner) run(ctx context.Context, kafkaOpts []kgo.Opt, now time.Time) error {
	var err error
	if r.filter, err = r.req.Filter(now); err != nil {
		return err
	}
	group := r.opts.GroupPrefix + r.id
	from, err := r.position(ctx, kafkaOpts, group)
	if err != nil {
		return err
	}
	for p, end := range r.ends {
		r.progress.Total += end - from[p]
	}
	r.report()
	if len(r.ends) == 0 {
		return nil
	}
	if err := r.ensureMarkerTopic(ctx, kafkaOpts); err != nil {
		return err
	}
	err = topics.ReadAll(ctx, kafkaOpts, r.opts.MarkerTopic, barrierPrefix, func(rec *kgo.Record) {
		r.replayed[string(rec.Key)] = true
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", r.opts.MarkerTopic, err)
	}
	if r.req.DryRun {
		return r.dryRun(ctx, kafkaOpts, from)
	}
	return r.replay(ctx, kafkaOpts, group)
}

// ensureMarkerTopic creates the marker topic if it is missing (feedbackd
// creates it at start-up; a replay may run against an older deployment).
func (r *runner) ensureMarkerTopic(ctx context.Context, kafkaOpts []kgo.Opt) error {
	cl, err := kgo.NewClient(kafkaOpts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return topics.Ensure(ctx, kadm.NewClient(cl), topics.Spec{Name: r.opts.MarkerTopic, Partitions: 1, Configs: topics.Compacted()})
}

// position sets limits and ends and returns, for each partition with dead
// letters left for the job, where the job continues.
func (r *runner) position(ctx context.Context, kafkaOpts []kgo.Opt, group string) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kafkaOpts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := r.opts.DLQTopic
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	endOffsets, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = endOffsets.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) { // a job never run before
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("progress of %s: %w", group, err)
	}
	from := map[int32]int64{}
	r.limits, r.ends = map[int32]int64{}, map[int32]int64{}
	endOffsets.Each(func(e kadm.ListedOffset) {
		r.limits[e.Partition] = e.Offset
		at := int64(0)
		if s, ok := starts.Lookup(topic, e.Partition); ok {
			at = s.Offset
		}
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.At > at {
			at = c.At
		}
		if at < e.Offset {
			from[e.Partition], r.ends[e.Partition] = at, e.Offset
		}
	})
	return from, nil
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
	cl := sess.Client()

	for len(r.ends) > 0 {
		fetches := sess.PollRecords(ctx, r.batchSize())
		if ctx.Err() != nil {
			return r.end(sess, kgo.TryAbort)
		}
		if err := fetchError(fetches); err != nil {
			return err
		}
		var (
			batch      Progress
			begun      bool
			produceErr atomic.Pointer[error]
			rewind     = map[int32]kgo.EpochOffset{}
			failure    error
		)
		fetches.EachRecord(func(rec *kgo.Record) {
			if failure != nil || ctx.Err() != nil {
				return
			}
			if limit := r.limits[rec.Partition]; rec.Offset >= limit {
				// Arrived after the run started: the next run reads it.
				if _, ok := rewind[rec.Partition]; !ok {
					rewind[rec.Partition] = kgo.EpochOffset{Epoch: -1, Offset: limit}
				}
				return
			}
			out, err := r.consider(rec, &batch)
			if err != nil {
				failure = err
				return
			}
			if out == nil || !r.pace(ctx) {
				return
			}
			if !begun {
				if failure = sess.Begin(); failure != nil {
					return
				}
				begun = true
			}
			batch.Replayed++
			for _, rec := range out {
				sess.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						produceErr.CompareAndSwap(nil, &err)
					}
				})
			}
		})
		if len(rewind) > 0 {
			cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.opts.DLQTopic: rewind})
			paused := map[string][]int32{r.opts.DLQTopic: nil}
			for p := range rewind {
				paused[r.opts.DLQTopic] = append(paused[r.opts.DLQTopic], p)
			}
			cl.PauseFetchPartitions(paused)
		}
		if !begun { // offsets of skipped records are committed in a transaction too
			if err := sess.Begin(); err != nil {
				return err
			}
		}
		if failure == nil && ctx.Err() == nil {
			failure = cl.Flush(context.WithoutCancel(ctx))
		}
		if perr := produceErr.Load(); failure == nil && perr != nil {
			failure = fmt.Errorf("re-inject: %w", *perr)
		}
		if failure != nil || ctx.Err() != nil {
			if err := r.end(sess, kgo.TryAbort); err != nil {
				return errors.Join(failure, err)
			}
			return failure
		}
		committed, err := r.endCommitted(sess)
		if err != nil {
			return err
		}
		if !committed { // a rebalance aborted it: the batch is read again
			continue
		}
		r.progress.Scanned += batch.Scanned
		r.progress.Matched += batch.Matched
		r.progress.Replayed += batch.Replayed
		r.progress.Skipped += batch.Skipped
		fetches.EachRecord(func(rec *kgo.Record) { r.reached(rec) })
		for p := range rewind {
			delete(r.ends, p)
		}
		r.report()
	}
	return nil
}

// end ends the open transaction on a context Ctrl-C cannot cancel: a
// transaction left open would hold back every read_committed reader of the
// topics it wrote to until it timed out.
func (r *runner) end(sess *kgo.GroupTransactSession, try kgo.TransactionEndTry) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := sess.End(ctx, try)
	return fenced(err)
}

func (r *runner) endCommitted(sess *kgo.GroupTransactSession) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	committed, err := sess.End(ctx, kgo.TryCommit)
	if err != nil {
		return false, fmt.Errorf("commit replay batch: %w", fenced(err))
	}
	return committed, nil
}

// fenced explains the errors of a run that another run of the same job
// replaced.
func fenced(err error) error {
	if errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.FencedInstanceID) {
		return fmt.Errorf("another run of this job took over (this one was fenced out): %w", err)
	}
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
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
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
		var ferr error
		fetches.EachRecord(func(rec *kgo.Record) {
			if end, ok := r.ends[rec.Partition]; ok && rec.Offset < end && ferr == nil {
				var out []*kgo.Record
				if out, ferr = r.consider(rec, r.progress); out != nil {
					r.progress.Replayed++ // would be
				}
			}
			r.reached(rec)
		})
		if ferr != nil {
			return ferr
		}
		r.report()
	}
	return nil
}

// consider counts a dead letter into c (scanned, matched, skipped) and
// returns the records that replay it: the re-injection and its marker, or
// nil. A dead letter that cannot go back where it came from fails the run,
// rather than be skipped and committed past.
func (r *runner) consider(rec *kgo.Record, c *Progress) ([]*kgo.Record, error) {
	c.Scanned++
	d := dlq.FromKafka(rec)
	if d.Err != nil || !r.filter.Match(d) {
		return nil, nil
	}
	c.Matched++
	topic, _, _ := strings.Cut(d.Source, "/")
	switch {
	case r.replayed[d.Coordinates()], // replayed already, by some job
		header.Get(d.Headers, header.ReplayJob) == r.id: // this job's own replay failed again
		c.Skipped++
		return nil, nil
	case d.ValueOmitted > 0: // nothing to re-inject: the original is at dlq-source
		c.Skipped++
		r.opts.Logger.Warn("dead letter cannot be replayed: its value was left out", "dlq", d.Coordinates(),
			"webhook-id", d.WebhookID, "source", d.Source)
		return nil, nil
	case !slices.Contains(r.opts.InputTopics, topic):
		return nil, fmt.Errorf("dead letter %s came from %q, which is not an input topic (%s): pass the deployment's input topics",
			d.Coordinates(), topic, strings.Join(r.opts.InputTopics, ", "))
	}
	// A replay-count that cannot be read (feedbackd writes none) counts as
	// no earlier replay.
	prev, _ := strconv.Atoi(header.Get(d.Headers, header.ReplayCount))
	h := header.Replay{
		Job: r.id, Of: d.Coordinates(), Count: max(prev, 0) + 1,
		PriorAttempts: d.Attempts, FirstAttemptAt: d.FirstAttemptAt,
	}.Append(append(header.Foreign(d.Headers), kgo.RecordHeader{Key: header.WebhookID, Value: []byte(d.WebhookID)}))
	return []*kgo.Record{
		{Topic: topic, Key: d.Key, Value: d.Value, Headers: h},
		{Topic: r.opts.MarkerTopic, Key: []byte(d.Coordinates()), Value: []byte(r.id)},
	}, nil
}

// reached notes that the run read rec; a partition is done at its end.
func (r *runner) reached(rec *kgo.Record) {
	if end, ok := r.ends[rec.Partition]; ok && rec.Offset+1 >= end {
		delete(r.ends, rec.Partition)
	}
}

// pace waits so that re-injections do not exceed Rate per second, counted
// from the first one.
func (r *runner) pace(ctx context.Context) bool {
	if r.req.Rate <= 0 {
		return true
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	due := r.start.Add(time.Duration(float64(r.paced) / r.req.Rate * float64(time.Second)))
	r.paced++
	if d := time.Until(due); d > 0 {
		return backoff.Sleep(ctx, d)
	}
	return true
}

// fetchError returns a fetch error that ends the run; the group session's
// own transient trouble (a coordinator moving) is retried by franz-go.
func fetchError(fs kgo.Fetches) error {
	var err error
	fs.EachError(func(t string, p int32, e error) {
		var gs *kgo.ErrGroupSession
		if err == nil && !errors.Is(e, context.Canceled) && !errors.As(e, &gs) {
			err = fmt.Errorf("read %s/%d: %w", t, p, e)
		}
	})
	return err
}
