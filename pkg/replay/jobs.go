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
	ErrNoJob        = errors.New("no such replay job")
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

// Jobs runs replay jobs for the admin API, in the background of the
// instance that received the request, and keeps their progress in Redis so
// that every instance can report it. It is safe for concurrent use; jobs
// stop (interrupted, resumable) when the context given to NewJobs ends.
type Jobs struct {
	ctx    context.Context
	kafka  []kgo.Opt
	rdb    redis.UniversalClient
	prefix string
	opts   Options
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
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
	return &Jobs{ctx: ctx, kafka: kafkaOpts, rdb: rdb, prefix: keyPrefix, opts: opts, log: opts.Logger}
}

func (j *Jobs) statusKey(id string) string { return j.prefix + "replay:" + id }
func (j *Jobs) leaseKey(id string) string  { return j.prefix + "replay-lease:" + id }

// Start validates req and starts its job in the background. It returns
// ErrRunning, with the job's progress, if the job runs somewhere already.
func (j *Jobs) Start(ctx context.Context, req Request) (Progress, error) {
	if _, err := req.Filter(time.Now()); err != nil {
		return Progress{}, err
	}
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
	p := Progress{ID: id, Request: req, State: StateRunning, StartedAt: now, UpdatedAt: now}
	j.save(p)
	j.wg.Go(func() { j.run(req, l) })
	return p, nil
}

// run runs a job while it holds its lease; a run that loses the lease
// (Redis lost it, another instance took the job) stops.
func (j *Jobs) run(req Request, l lease.Lease) {
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
					j.log.Warn("replay lost its lease; stopping (run it again to resume)", "id", id, "err", err)
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
		if time.Since(last) >= time.Second || p.State != StateRunning {
			last = time.Now()
			j.save(p)
		}
	}
	j.log.Info("replay started", "id", id, "request", req)
	p, err := Run(ctx, j.kafka, req, opts)
	p.ID = id
	j.save(p)
	l.Release(context.WithoutCancel(ctx))
	j.log.Info("replay ended", "id", id, "state", p.State, "replayed", p.Replayed, "matched", p.Matched, "skipped", p.Skipped, "err", err)
}

// indexKey is a sorted set of the jobs' ids by start time, for List.
func (j *Jobs) indexKey() string { return j.prefix + "replays" }

func (j *Jobs) save(p Progress) {
	b, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 5*time.Second)
	defer cancel()
	if err := j.rdb.Set(ctx, j.statusKey(p.ID), b, statusTTL).Err(); err != nil {
		j.log.Warn("cannot save replay progress", "id", p.ID, "err", err)
	}
	// The index outlives no status: entries older than statusTTL go.
	started := float64(p.StartedAt.UnixMilli())
	if err := j.rdb.ZAdd(ctx, j.indexKey(), redis.Z{Score: started, Member: p.ID}).Err(); err != nil {
		j.log.Warn("cannot index replay job", "id", p.ID, "err", err)
	}
	j.rdb.ZRemRangeByScore(ctx, j.indexKey(), "-inf", strconv.FormatInt(time.Now().Add(-statusTTL).UnixMilli(), 10))
}

// List returns the last limit jobs, newest first, with their progress as
// Get reports it. Jobs are kept for a week after they end.
func (j *Jobs) List(ctx context.Context, limit int) ([]Progress, error) {
	ids, err := j.rdb.ZRevRange(ctx, j.indexKey(), 0, int64(limit)-1).Result()
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
		return Progress{}, fmt.Errorf("replay %s: %w", id, err)
	}
	if p.State == StateRunning {
		if n, err := j.rdb.Exists(ctx, j.leaseKey(id)).Result(); err == nil && n == 0 {
			p.State = StateInterrupted
		}
	}
	return p, nil
}

// Wait refuses new jobs and blocks until every job started by this
// instance has stopped (they stop when NewJobs's context ends).
func (j *Jobs) Wait() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.wg.Wait()
}
