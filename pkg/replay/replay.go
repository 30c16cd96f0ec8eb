package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/backoff"
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
	// Topics says, for a recovery, what each input topic still holds of
	// the window: retention bounds what can be resent.
	Topics []TopicReach `json:"topics,omitempty"`
}

// TopicReach is what one input topic still holds of a recovery's window.
type TopicReach struct {
	Topic string `json:"topic"`
	// Earliest is the timestamp of the oldest record the topic still
	// holds (of any partition); zero if it holds none.
	Earliest time.Time `json:"earliest,omitzero"`
	// Complete is false when retention removed records of the window from
	// some partition: Unreachable is then the part of the window that was
	// not (or not wholly) reachable, from its start to the oldest record
	// still held there.
	Complete    bool    `json:"complete"`
	Unreachable *Window `json:"unreachable,omitempty"`
}

// Window is a span of record timestamps, Since included, Until not.
type Window struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// Options configure a run.
type Options struct {
	DLQTopic    string
	MarkerTopic string   // compacted topic of replayed dead letters; default DLQTopic + ".replayed"
	InputTopics []string // where dead letters may be re-injected (their source topic); what a recovery reads
	GroupPrefix string   // the job's consumer group and transactional id: GroupPrefix + ID
	// Progress, if set, is called after each batch and at the end, from
	// the goroutine that called Run.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Run runs the job of req until every record it reads that was in its
// topics when it started has been read, or ctx ends (the open transaction
// is then aborted, and running the job again resumes it). A replay reads
// the dead-letter topic; a recovery (Source SourceInput, resolved by
// Request.Recovery) reads its window of the input topics. kafkaOpts carry
// seeds, TLS and SASL (kafkaconn.Config.Opts). It returns the final
// progress; its error says why a run failed.
//
// Each matching dead letter is re-injected at most once, by any job: its
// re-injection and a marker naming it are written in one transaction, and
// dead letters with a marker are skipped. A dead letter of an event that
// was replayed and failed again is a new one, and can be replayed. A
// recovery re-injects each of its records once per job: the re-injections
// and the job's read offsets are written in one transaction.
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
	r := &runner{req: req, id: p.ID, opts: opts, progress: &p, report: report}
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

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// source is what a job reads: the dead-letter topic (dlqSource) or a
// window of the input topics (windowSource).
type source interface {
	topics() []string
	// reset is where a partition the job's group has no offset for starts.
	reset() kgo.Offset
	// bounds returns, for every partition, where a job that never ran
	// starts and where every job ends (offsets as of now), and what the
	// topics still hold of what the job asks for (nil for dead letters).
	bounds(ctx context.Context, adm *kadm.Client) (starts, limits map[tp]int64, reach []TopicReach, err error)
	// prepare readies what consider needs, once the job has work.
	prepare(ctx context.Context, kafkaOpts []kgo.Opt) error
	// consider counts a record into c (scanned, matched, skipped) and
	// returns the records that re-inject it, or nil.
	consider(rec *kgo.Record, c *Progress) ([]*kgo.Record, error)
}

type runner struct {
	req      Request
	id       string
	opts     Options
	progress *Progress
	report   func()
	src      source
	limits   map[tp]int64 // every partition: where the job ends (the end offset when the run started, for dead letters)
	ends     map[tp]int64 // partitions still to read, up to their limit
	paced    int64
	start    time.Time // first re-injection: the pacing clock starts there
}

func (r *runner) run(ctx context.Context, kafkaOpts []kgo.Opt, now time.Time) error {
	var err error
	if r.req.Source == SourceInput {
		r.src, err = newWindowSource(r.req, r.opts)
	} else {
		r.src, err = newDLQSource(r.req, r.id, r.opts, now)
	}
	if err != nil {
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
	if err := r.src.prepare(ctx, kafkaOpts); err != nil {
		return err
	}
	if r.req.DryRun {
		return r.dryRun(ctx, kafkaOpts, from)
	}
	return r.replay(ctx, kafkaOpts, group)
}

// position sets limits and ends and returns, for each partition with
// records left for the job, where the job continues.
func (r *runner) position(ctx context.Context, kafkaOpts []kgo.Opt, group string) (map[tp]int64, error) {
	cl, err := kgo.NewClient(kafkaOpts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, limits, reach, err := r.src.bounds(ctx, adm)
	if err != nil {
		return nil, err
	}
	r.progress.Topics = reach
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) { // a job never run before
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("progress of %s: %w", group, err)
	}
	from := map[tp]int64{}
	r.limits, r.ends = limits, map[tp]int64{}
	for p, limit := range limits {
		at := starts[p]
		if c, ok := committed.Lookup(p.topic, p.partition); ok && c.At > at {
			at = c.At
		}
		if at < limit {
			from[p], r.ends[p] = at, limit
		}
	}
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
		kgo.ConsumeTopics(r.src.topics()...),
		kgo.ConsumeResetOffset(r.src.reset()),
		kgo.TransactionalID(group),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The commit markers of transactions (replays and recoveries write
		// the input topics in transactions) reach the loop: a partition
		// whose range ends with one is seen to be done.
		kgo.KeepControlRecords(),
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
			rewind     = map[tp]int64{}
			failure    error
		)
		fetches.EachRecord(func(rec *kgo.Record) {
			if failure != nil || ctx.Err() != nil {
				return
			}
			k := tp{rec.Topic, rec.Partition}
			if limit := r.limits[k]; rec.Offset >= limit {
				// Arrived after the run started: the next run reads it.
				if _, ok := rewind[k]; !ok {
					rewind[k] = limit
				}
				return
			}
			if rec.Attrs.IsControl() {
				batch.Total-- // an offset, not a record
				return
			}
			out, err := r.src.consider(rec, &batch)
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
			offsets := map[string]map[int32]kgo.EpochOffset{}
			paused := map[string][]int32{}
			for k, limit := range rewind {
				if offsets[k.topic] == nil {
					offsets[k.topic] = map[int32]kgo.EpochOffset{}
				}
				offsets[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: limit}
				paused[k.topic] = append(paused[k.topic], k.partition)
			}
			cl.SetOffsets(offsets)
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
		r.progress.Total += batch.Total
		r.progress.Scanned += batch.Scanned
		r.progress.Matched += batch.Matched
		r.progress.Replayed += batch.Replayed
		r.progress.Skipped += batch.Skipped
		fetches.EachRecord(func(rec *kgo.Record) { r.reached(rec) })
		for k := range rewind {
			delete(r.ends, k)
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
func (r *runner) dryRun(ctx context.Context, kafkaOpts []kgo.Opt, from map[tp]int64) error {
	parts := map[string]map[int32]kgo.Offset{}
	for p, at := range from {
		if parts[p.topic] == nil {
			parts[p.topic] = map[int32]kgo.Offset{}
		}
		parts[p.topic][p.partition] = kgo.NewOffset().At(at)
	}
	cl, err := kgo.NewClient(append(slices.Clone(kafkaOpts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(parts))...)
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
			if end, ok := r.ends[tp{rec.Topic, rec.Partition}]; ok && rec.Offset < end && ferr == nil {
				if rec.Attrs.IsControl() {
					r.progress.Total--
				} else {
					var out []*kgo.Record
					if out, ferr = r.src.consider(rec, r.progress); out != nil {
						r.progress.Replayed++ // would be
					}
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

// reached notes that the run read rec; a partition is done at its end.
func (r *runner) reached(rec *kgo.Record) {
	k := tp{rec.Topic, rec.Partition}
	if end, ok := r.ends[k]; ok && rec.Offset+1 >= end {
		delete(r.ends, k)
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
