package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/lease"
)

// Errors of Jobs.
var (
	ErrNoJob        = errors.New("no such job")
	ErrRunning      = errors.New("this replay job is already running")
	ErrShuttingDown = errors.New("feedbackd is shutting down")
)

// StatusID is where the API keeps a run's progress: the job id, or for a
// dry run the job id with "-dry" (a dry run neither blocks nor overwrites
// the real job's progress).
func (r Request) StatusID() string {
	if r.DryRun {
		return r.ID() + "-dry"
	}
	return r.ID()
}

// Jobs runs replay and recovery jobs for the admin API, in the background
// of the instance that received the request, and keeps their progress in
// Redis so that every instance can report it. It is safe for concurrent
// use; jobs stop (interrupted, resumable) when the context given to NewJobs
// ends. A replay resumes when it is started again; a recovery, started
// afresh by each request, is resumed by ResumeRecoveries.
type Jobs struct {
	ctx    context.Context
	kafka  []kgo.Opt
	rdb    redis.UniversalClient
	prefix string
	opts   Options
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
	quit   chan struct{} // closed by Wait: ResumeRecoveries stops
	wg     sync.WaitGroup
}

const (
	statusTTL = 7 * 24 * time.Hour
	leaseTTL  = 30 * time.Second // a running job renews its lease well within this
)

// NewJobs returns a job runner; keyPrefix prefixes its Redis keys.
func NewJobs(ctx context.Context, kafkaOpts []kgo.Opt, rdb redis.UniversalClient, keyPrefix string, opts Options) *Jobs {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Jobs{ctx: ctx, kafka: kafkaOpts, rdb: rdb, prefix: keyPrefix, opts: opts, log: opts.Logger, quit: make(chan struct{})}
}

func (j *Jobs) statusKey(id string) string { return j.prefix + "replay:" + id }
func (j *Jobs) leaseKey(id string) string  { return j.prefix + "replay-lease:" + id }

// Start validates req and starts its job in the background (a recovery
// resolved by Request.Recovery, a new job unless req has its Job). It
// returns ErrRunning, with the job's progress, if the job runs somewhere
// already.
func (j *Jobs) Start(ctx context.Context, req Request) (Progress, error) {
	var err error
	if req.Source == SourceInput {
		req, err = req.Recovery(time.Now())
	} else {
		_, err = req.Filter(time.Now())
	}
	if err != nil {
		return Progress{}, err
	}
	return j.start(ctx, req, Progress{})
}

// start starts req's job if it can take its lease; counts of earlier runs
// in base are added to the new run's.
func (j *Jobs) start(ctx context.Context, req Request, base Progress) (Progress, error) {
	j.mu.Lock() // orders wg.Go before Wait
	defer j.mu.Unlock()
	if j.closed || j.ctx.Err() != nil {
		return Progress{}, ErrShuttingDown
	}
	id := req.StatusID()
	l, ok, err := lease.Obtain(ctx, j.rdb, j.leaseKey(id), leaseTTL)
	if err != nil {
		return Progress{}, fmt.Errorf("redis: %w", err)
	}
	if !ok {
		p, err := j.Get(ctx, id)
		if err != nil {
			return Progress{}, err
		}
		return p, ErrRunning
	}
	now := time.Now()
	p := Progress{ID: id, Request: req, State: StateRunning, StartedAt: now, UpdatedAt: now, Topics: base.Topics}
	if !base.StartedAt.IsZero() {
		p = base.resumed(p)
	}
	j.save(p)
	j.wg.Go(func() { j.run(req, l, base) })
	return p, nil
}

// resumed is the progress p of a new run seen as the job's: its counts
// added to those of the earlier runs in base, which started the job. A dry
// run reads its window again from the start: nothing is carried.
func (base Progress) resumed(p Progress) Progress {
	if base.Request.DryRun {
		return p
	}
	p.StartedAt = base.StartedAt
	p.Total += base.Scanned
	p.Scanned += base.Scanned
	p.Matched += base.Matched
	p.Replayed += base.Replayed
	p.Skipped += base.Skipped
	return p
}

// run runs a job while it holds its lease; a run that loses the lease
// (Redis lost it, another instance took the job) stops.
func (j *Jobs) run(req Request, l lease.Lease, base Progress) {
	id := req.StatusID()
	ctx, cancel := context.WithCancel(j.ctx)
	defer cancel()
	renew := time.NewTicker(leaseTTL / 3)
	defer renew.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-renew.C:
				if ok, err := l.Refresh(ctx, leaseTTL); err != nil || !ok {
					j.log.Warn("job lost its lease; stopping (a replay resumes when run again, a recovery on its own)", "id", id, "err", err)
					cancel()
					return
				}
			}
		}
	}()
	opts := j.opts
	last := time.Time{}
	opts.Progress = func(p Progress) {
		p.ID = id
		if !base.StartedAt.IsZero() {
			p = base.resumed(p)
		}
		if time.Since(last) >= time.Second || p.State != StateRunning {
			last = time.Now()
			j.save(p)
		}
	}
	j.log.Info("job started", "id", id, "request", req, "resumed", !base.StartedAt.IsZero())
	p, err := Run(ctx, j.kafka, req, opts)
	p.ID = id
	if !base.StartedAt.IsZero() {
		p = base.resumed(p)
	}
	j.save(p)
	l.Release(context.WithoutCancel(ctx))
	j.log.Info("job ended", "id", id, "state", p.State, "dry_run", req.DryRun, "replayed", p.Replayed, "matched", p.Matched, "skipped", p.Skipped, "err", err)
}

// indexKeys are the sorted sets of a job's id by start time: of every
// replay (List), or of every recovery (ResumeRecoveries) and of the
// tenant's (Recoveries).
func (j *Jobs) indexKeys(req Request) []string {
	if req.Source == SourceInput {
		return []string{j.prefix + "recoveries", j.tenantIndex(req.Org, req.Sandbox)}
	}
	return []string{j.prefix + "replays"}
}

func (j *Jobs) tenantIndex(org, sandbox string) string {
	return j.prefix + "recoveries:" + org + "/" + sandbox
}

func (j *Jobs) save(p Progress) {
	b, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 5*time.Second)
	defer cancel()
	if err := j.rdb.Set(ctx, j.statusKey(p.ID), b, statusTTL).Err(); err != nil {
		j.log.Warn("cannot save replay progress", "id", p.ID, "err", err)
	}
	// The index outlives no status: entries older than statusTTL go.
	started := float64(p.StartedAt.UnixMilli())
	for _, key := range j.indexKeys(p.Request) {
		if err := j.rdb.ZAdd(ctx, key, redis.Z{Score: started, Member: p.ID}).Err(); err != nil {
			j.log.Warn("cannot index job", "id", p.ID, "err", err)
		}
		j.rdb.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(time.Now().Add(-statusTTL).UnixMilli(), 10))
	}
}

// List returns the last limit replay jobs, newest first, with their
// progress as Get reports it. Jobs are kept for a week after they end.
func (j *Jobs) List(ctx context.Context, limit int) ([]Progress, error) {
	return j.list(ctx, j.prefix+"replays", limit)
}

// Recoveries returns the last limit recovery jobs of a tenant config,
// newest first, as List does.
func (j *Jobs) Recoveries(ctx context.Context, org, sandbox string, limit int) ([]Progress, error) {
	return j.list(ctx, j.tenantIndex(org, sandbox), limit)
}

func (j *Jobs) list(ctx context.Context, index string, limit int) ([]Progress, error) {
	ids, err := j.rdb.ZRevRange(ctx, index, 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	out := make([]Progress, 0, len(ids))
	for _, id := range ids {
		p, err := j.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNoJob): // expired
		case err != nil:
			return nil, err
		default:
			out = append(out, p)
		}
	}
	return out, nil
}

// Get returns a job's last saved progress. A job saved as running whose
// lease expired (its instance died) is reported interrupted: starting the
// same request again resumes it.
func (j *Jobs) Get(ctx context.Context, id string) (Progress, error) {
	b, err := j.rdb.Get(ctx, j.statusKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Progress{}, ErrNoJob
	}
	if err != nil {
		return Progress{}, fmt.Errorf("redis: %w", err)
	}
	var p Progress
	if err := json.Unmarshal(b, &p); err != nil {
		return Progress{}, fmt.Errorf("job %s: %w", id, err)
	}
	if p.State == StateRunning {
		if n, err := j.rdb.Exists(ctx, j.leaseKey(id)).Result(); err == nil && n == 0 {
			p.State = StateInterrupted
		}
	}
	return p, nil
}

// ResumeRecoveries resumes, now and then every interval until the context
// given to NewJobs ends or Wait is called, the recoveries that were interrupted (their
// instance stopped or died, and their lease expired) on whichever instance
// gets their lease first: a recovery runs to its end without being asked
// again. Failed ones are left for an operator to read and start anew.
func (j *Jobs) ResumeRecoveries(interval time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	j.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			j.resumeInterrupted()
			select {
			case <-j.ctx.Done():
				return
			case <-j.quit:
				return
			case <-t.C:
			}
		}
	})
}

func (j *Jobs) resumeInterrupted() {
	ctx, cancel := context.WithTimeout(j.ctx, 10*time.Second)
	defer cancel()
	ids, err := j.rdb.ZRevRange(ctx, j.prefix+"recoveries", 0, -1).Result()
	if err != nil {
		if j.ctx.Err() == nil {
			j.log.Warn("cannot list recoveries to resume", "err", err)
		}
		return
	}
	for _, id := range ids {
		p, err := j.Get(ctx, id)
		if err != nil || p.State != StateInterrupted || p.Request.Source != SourceInput {
			continue
		}
		switch _, err := j.start(ctx, p.Request, p); {
		case err == nil:
			j.log.Info("recovery resumed", "id", id, "replayed_before", p.Replayed)
		case errors.Is(err, ErrRunning), errors.Is(err, ErrShuttingDown): // another instance has it; or stopping
		default:
			j.log.Warn("cannot resume recovery", "id", id, "err", err)
		}
	}
}

// Wait refuses new jobs and blocks until every job started by this
// instance has stopped (they stop when NewJobs's context ends).
func (j *Jobs) Wait() {
	j.mu.Lock()
	if !j.closed {
		close(j.quit)
	}
	j.closed = true
	j.mu.Unlock()
	j.wg.Wait()
}
