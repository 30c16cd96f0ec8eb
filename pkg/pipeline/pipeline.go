package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/backoff"
	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/outcome"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Configs is what the pipeline needs from the config store.
type Configs interface {
	// Lookup returns the tenant's target, configstore.ErrNotFound if it has
	// none, configstore.ErrCorrupt if it is unusable; any other error is
	// transient and the lookup is retried.
	Lookup(ctx context.Context, org, sandboxID string) (*webhook.Target, error)
	// Disable turns a config off after its endpoint answered 410 Gone or
	// failed for FailClock's period.
	Disable(ctx context.Context, org, sandboxID, reason string) error
}

// Admitter says whether an attempt to an endpoint may go now: per-endpoint
// in-flight limits and circuit breakers (see package admission).
type Admitter interface {
	Admit(ctx context.Context, endpoint string) admission.Decision
	// Wait waits its turn for a place, first come first served, and
	// answers like Admit (Go, or Open if the breaker opened meanwhile);
	// an error means ctx ended and no place is taken.
	Wait(ctx context.Context, endpoint string) (admission.Decision, error)
	// Slow reports whether the endpoint's attempts take much longer than
	// everyone's (or it stopped answering).
	Slow(endpoint string) bool
	Success(ctx context.Context, endpoint string) (closed bool)
	Failure(ctx context.Context, endpoint string) (openUntil time.Time, opened bool)
}

// Deduper remembers delivered events and claims them for attempts (see
// package dedupe); key names one event (tenant, input record timestamp,
// webhook-id). Its errors never keep an event waiting.
type Deduper interface {
	// Claim claims key for an attempt lasting at most ttl, or says it was
	// delivered or is being attempted elsewhere (Unknown if it cannot tell).
	Claim(ctx context.Context, key string, ttl time.Duration) dedupe.Claim
	// Delivered reports whether key was recorded as delivered.
	Delivered(ctx context.Context, key string) bool
	// Release ends a claim whose attempt did not deliver.
	Release(ctx context.Context, key string, c dedupe.Claim)
	// Record remembers that key was delivered, without waiting: then is
	// called once, from any goroutine, with nil once it is remembered or
	// the error. then must not block.
	Record(key string, then func(error))
}

// OutcomeLog keeps the recent outcome records of each config for the admin
// API (package deliverylog). Add is called on the hot path with the records
// of one job, the same the outcomes topic gets: it must not block, and it
// owns recs once called.
type OutcomeLog interface {
	Add(recs []*outcome.Record)
}

// Sender makes delivery attempts (deliver.Client).
type Sender interface {
	// Start makes one attempt and calls done with its result, once: before
	// it returns, or on a goroutine that waited for a slow answer. Waiting
	// there rather than on the job's goroutine, whose stack the stages
	// grew, is what makes a slow delivery in flight cheap.
	Start(ctx context.Context, t *webhook.Target, id string, body []byte, done func(deliver.Result))
}

// Options configure a Pipeline.
type Options struct {
	Group       string
	InputTopics []string
	RetryPrefix string // retry tiers are RetryPrefix + "." + tier
	DLQTopic    string
	// OutcomesTopic receives a record per attempt and per outcome (package
	// outcome); "" turns it off.
	OutcomesTopic string
	// OutcomesKafka connects the outcomes topic's own producer (seeds, TLS,
	// SASL: kafkaconn.Config.Opts, and its client id and hooks); nil: the
	// options given to New.
	OutcomesKafka []kgo.Opt
	// Log, if set, gets every job's outcome records (see OutcomeLog).
	Log OutcomeLog
	// Instance names this instance in outcome records.
	Instance    string
	Policy      retry.Policy
	Concurrency int // deliveries in flight, all partitions together, at start and at least
	// MaxInflight is as many as the slots may grow to (see adapt) while
	// they are all taken by deliveries waiting for slow endpoints and the
	// process has cores to spare. Default (or below Concurrency):
	// Concurrency, fixed.
	MaxInflight int
	Admission   Admitter // nil: no per-endpoint limits
	Dedupe      Deduper  // nil: no duplicate suppression
	// FailClock, if set, disables configs that fail with no success for
	// its period (delivery.disable_after); nil: never.
	FailClock FailClock
	// ClaimTTL bounds a dedupe claim: longer than one attempt can last.
	// Default: 1 minute.
	ClaimTTL time.Duration
	// Dependency, if set, is checked every second with a 2 s timeout;
	// while it fails, fetching is paused (records already read still run)
	// and it is checked again with backoff. An error wrapping ErrSlow
	// (no answer in time) pauses only once it persists (watchDependency).
	// feedbackd passes a Redis ping on a connection of its own.
	Dependency func(ctx context.Context) error
	// MaxParked bounds the jobs waiting, without a slot, for a busy
	// endpoint, and one endpoint may have half of them; beyond that they
	// wait with their slot, or are deferred to a retry tier if the
	// endpoint is slow. A parked job handed its place goes on without a
	// slot if none is free, so attempts in flight are at most Concurrency
	// plus MaxParked. Default: Concurrency.
	MaxParked       int
	ShutdownTimeout time.Duration // how long Run drains in-flight work on stop
	CommitInterval  time.Duration
	LagInterval     time.Duration // how often consumer lag is measured
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	// Tracer, if set, traces each job (see trace.go) and makes the
	// attempt's context the webhook's traceparent; nil: no spans.
	Tracer trace.Tracer
}

// Pipeline is the consumer. Create it with New and call Run once.
type Pipeline struct {
	opts     Options
	cl       *kgo.Client
	outcomes *kgo.Client // produces to OutcomesTopic; nil when it is off
	configs  Configs
	sender   Sender
	metrics  *Metrics
	log      *slog.Logger
	tracker  *offsets.Tracker // offsets read and settled, per partition
	holds    *holds           // retry records not due yet
	slots    *slots           // jobs running
	parking  *parking         // jobs waiting for a busy endpoint without a slot
	workers  *goroutines      // the goroutines jobs run on
	attempts slowAttempts     // in progress, by the second they started (see adapt)
	// depFailing says the last dependency check failed or was slow: the
	// slots do not grow then (see adapt).
	depFailing atomic.Bool
	tracer     trace.Tracer // nil: not tracing
	// unrecorded is the last dedupe record error logged: a batch's
	// records share one, which is logged once (see record).
	unrecorded struct {
		sync.Mutex
		last error
	}
}

// New builds a Pipeline; kafkaOpts carry seeds, TLS and SASL (kafkaconn.Config.Opts). It creates the
// Kafka client but does not connect yet.
func New(kafkaOpts []kgo.Opt, configs Configs, sender Sender, opts Options) (*Pipeline, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 256
	}
	opts.MaxInflight = max(opts.MaxInflight, opts.Concurrency)
	if opts.MaxParked <= 0 {
		opts.MaxParked = opts.Concurrency
	}
	if opts.ClaimTTL <= 0 {
		opts.ClaimTTL = time.Minute
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	if opts.LagInterval <= 0 {
		opts.LagInterval = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m := newMetrics(opts.Registerer, opts.InputTopics)
	p := &Pipeline{
		opts:    opts,
		configs: configs,
		sender:  sender,
		metrics: m,
		log:     opts.Logger,
		tracker: offsets.NewTracker(),
		slots:   newSlots(opts.Concurrency, opts.MaxInflight, m.inflight),
		parking: newParking(opts.MaxParked, m.parked),
		workers: newGoroutines(),
		tracer:  opts.Tracer,
	}
	p.holds = &holds{
		by:     map[*offsets.Partition]*held{},
		pause:  func(t string, id int32) { p.cl.PauseFetchPartitions(map[string][]int32{t: {id}}) },
		resume: func(t string, id int32) { p.cl.ResumeFetchPartitions(map[string][]int32{t: {id}}) },
		held:   m.retriesHeld,
	}

	cl, err := kgo.NewClient(append(kafkaOpts,
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(p.topicPatterns()...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// Replays write in transactions: never act on an aborted one.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.lost),
		// Fetched batches are held decompressed until polled: small fetches
		// keep memory flat with any backlog (JSON compresses about 8x).
		kgo.FetchMaxBytes(4<<20),
		kgo.FetchMaxPartitionBytes(256<<10),
	)...)
	if err != nil {
		return nil, err
	}
	p.cl = cl
	if opts.OutcomesTopic != "" {
		if p.outcomes, err = newOutcomesClient(kafkaOpts, opts); err != nil {
			cl.Close()
			return nil, err
		}
	}
	return p, nil
}

// topicPatterns matches the input topics and every retry tier, including
// tiers of an earlier schedule that may still have records.
func (p *Pipeline) topicPatterns() []string {
	pats := make([]string, 0, len(p.opts.InputTopics)+1)
	for _, t := range p.opts.InputTopics {
		pats = append(pats, "^"+regexp.QuoteMeta(t)+"$")
	}
	return append(pats, "^"+regexp.QuoteMeta(p.opts.RetryPrefix)+`\.[0-9hms.]+$`)
}

func (p *Pipeline) isRetryTopic(topic string) bool {
	return strings.HasPrefix(topic, p.opts.RetryPrefix+".")
}

// Ping checks that a broker answers.
func (p *Pipeline) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }

// Client is the Kafka client, for producing to topics the pipeline owns.
func (p *Pipeline) Client() *kgo.Client { return p.cl }

// Run consumes until ctx ends. Then it stops fetching, waits up to
// ShutdownTimeout for deliveries in flight (cancelling them after that; they
// are not committed and are redelivered after a restart), leaves the group,
// committing every settled offset, and closes the client. It returns nil
// after a clean stop.
//
// The client blocks rebalances from a poll until AllowRebalance, so the
// partitions of a batch cannot change hands while it is dispatched and
// commits made in between are for partitions this member owns. To keep that
// window short, a poll asks for no more records than there are free slots.
func (p *Pipeline) Run(ctx context.Context) error {
	// Jobs outlive ctx by the drain: work ends only when it times out.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	p.holds.release = func(j job) { p.start(ctx, work, j) }
	go p.lagLoop(ctx)
	go p.watchDependency(ctx)
	go p.adaptLoop(ctx)

	lastCommit := time.Now()
	gather := time.NewTimer(0)
	for p.slots.wait(ctx, gather) {
		pctx, cancel := context.WithTimeout(ctx, p.opts.CommitInterval)
		fetches := p.cl.PollRecords(pctx, min(p.slots.free(), 1024))
		cancel()
		if fetches.IsClientClosed() {
			p.cl.AllowRebalance()
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn("fetch error", "topic", topic, "partition", partition, "error", err)
				p.metrics.fetchErrors.Inc()
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if part := p.tracker.Get(fp.Topic, fp.Partition); part != nil && fp.Err == nil {
				part.Fetched(fp.HighWatermark)
			}
			for _, r := range fp.Records {
				p.dispatch(ctx, work, r)
			}
		})
		if time.Since(lastCommit) >= p.opts.CommitInterval {
			p.commit(ctx, p.tracker.All())
			lastCommit = time.Now()
		}
		p.cl.AllowRebalance()
	}
	return p.shutdown(stopWork)
}

// shutdown drains the jobs running (parked ones give up at once), cancels
// those still running after ShutdownTimeout with stopWork, and leaves the
// group.
func (p *Pipeline) shutdown(stopWork context.CancelFunc) error {
	p.log.Info("draining in-flight deliveries", "timeout", p.opts.ShutdownTimeout)
	drained := p.slots.startDrain()
	select {
	case <-drained:
	case <-time.After(p.opts.ShutdownTimeout):
		p.log.Warn("drain timed out; cancelling deliveries still in flight (they will be redelivered)")
		stopWork()
		<-drained
	}
	p.workers.close()
	p.holds.dropAll()
	// Leaving the group calls revoked, which commits what is settled while
	// this member still owns the partitions.
	p.cl.Close()
	if p.outcomes != nil {
		// Empty: a job is done (the drain waited for it) once its outcome
		// records are acknowledged or failed.
		p.outcomes.Close()
	}
	p.log.Info("pipeline stopped")
	return nil
}

// dispatch runs in the poll loop for each record, in offset order per
// partition: the ingest stage. It may wait for a slot: that is the
// back-pressure that stops fetching. ctx is Run's; work is the jobs'.
func (p *Pipeline) dispatch(ctx, work context.Context, r *kgo.Record) {
	part, retired := p.tracker.Add(r.Topic, r.Partition, r.Offset, r.LeaderEpoch)
	if retired != nil {
		p.rewound(ctx, retired, r)
	}
	if part == nil {
		return // not ours any more: the next owner reads it
	}
	p.metrics.consumed.WithLabelValues(r.Topic).Inc()
	j := job{rec: r, part: part}
	if p.isRetryTopic(r.Topic) {
		st, err := header.ParseRetry(r.Headers)
		if err != nil {
			j.badState = err
		} else {
			j.state = &st
			if p.holds.hold(part, j) {
				return
			}
		}
	}
	p.start(ctx, work, j)
}

// rewound handles the client reading a partition again from an offset it
// read already (franz-go resets a partition when a broker reports lost
// records; see offsets.Tracker.Add). The records of the first read still
// in flight are waited for, bounded by ShutdownTimeout as on a revoke, so
// that their deliveries are recorded before the re-read copies, which
// dedupe checks, come to the same events; held ones are dropped (abandoned):
// those at or above the rewind are read again, and one below it keeps the
// commit point back (offsets.Partition), so the partition's next reader
// gets it. Nothing below the rewind is committed before it settles.
func (p *Pipeline) rewound(ctx context.Context, retired *offsets.Partition, r *kgo.Record) {
	p.metrics.rewinds.Inc()
	p.log.Warn("the Kafka client reads the partition again from an offset it read already; re-read records are checked against dedupe",
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "in_flight", retired.Unsettled())
	p.holds.drop([]*offsets.Partition{retired})
	wctx, cancel := context.WithTimeout(ctx, p.opts.ShutdownTimeout)
	defer cancel()
	if err := retired.Wait(wctx); err != nil && ctx.Err() == nil {
		p.log.Warn("records read before the rewind still in flight; their re-read copies may be sent again",
			"topic", r.Topic, "partition", r.Partition, "in_flight", retired.Unsettled())
	}
}

// start runs a job once a slot is free: process decides its outcome and
// settle carries it out and marks the offset. A record that does not run
// (ctx ended first), or whose outcome is not settled, is abandoned: never
// committed, so it is read again after a restart or by the partition's next
// owner.
func (p *Pipeline) start(ctx, work context.Context, j job) {
	s := p.slots.acquire(ctx)
	if s == nil {
		j.part.Abandon(j.rec.Offset)
		return
	}
	p.workers.goFunc(func() { p.run(work, &j, s) })
}

func (p *Pipeline) commit(ctx context.Context, parts []*offsets.Partition) {
	toCommit := offsets.Committable(parts)
	if len(toCommit) == 0 {
		return
	}
	p.cl.CommitOffsetsSync(ctx, toCommit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitError(resp)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			p.metrics.commitErrors.Inc()
			p.log.Warn("offset commit failed; retried on the next commit", "error", err)
		}
	})
}

func commitError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, part := range t.Partitions {
			if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Pipeline) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.tracker.Assign(assigned)
	p.log.Info("partitions assigned", "partitions", assigned)
}

// revoked drains the revoked partitions' deliveries in flight (bounded by
// ShutdownTimeout) and commits what they settled before the partitions
// move to another member. It runs between batches (BlockRebalanceOnPoll).
func (p *Pipeline) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	parts := p.tracker.Revoke(revoked)
	if len(parts) == 0 {
		return
	}
	p.holds.drop(parts)
	wctx, cancel := context.WithTimeout(context.Background(), p.opts.ShutdownTimeout)
	defer cancel()
	for _, part := range parts {
		if err := part.Wait(wctx); err != nil {
			p.log.Warn("revoked partition still has deliveries in flight; they will be redelivered by the next owner",
				"topic", part.Topic, "partition", part.ID, "in_flight", part.Unsettled())
		}
	}
	cctx, cancelCommit := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCommit()
	p.commit(cctx, parts)
	p.log.Info("partitions revoked", "partitions", revoked)
}

// lost partitions are already someone else's: nothing may be committed.
func (p *Pipeline) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := p.tracker.Revoke(lost)
	p.holds.drop(parts)
	p.log.Warn("partitions lost", "partitions", lost)
}

// ErrSlow marks an error of Options.Dependency as slowness rather than an
// outage: the dependency did not answer within the check's timeout, which a
// loaded server or a starved machine also causes. Wrap it (%w).
var ErrSlow = errors.New("dependency slow")

// slowChecks is how many checks in a row may time out before fetching is
// paused. A check times out after 2 s and the next one starts at once, so
// a dependency that answers nothing for about 6 s pauses fetching; a stall
// shorter than that (a fork for a snapshot, a large key freed, a machine
// starved for a few seconds) only logs a warning. Records already read
// wait for Redis either way: pausing only stops reading more of them.
const slowChecks = 3

// depState is what watchDependency knows between checks.
type depState struct {
	paused bool
	slow   int // checks in a row that returned ErrSlow
}

// depAction is what one check asks watchDependency to do.
type depAction int

const (
	depNone   depAction = iota
	depSlow             // first slow answer of a spell: warn once, keep fetching
	depPause            // down, or slow for slowChecks checks: pause fetching
	depResume           // answered while paused: resume fetching
	depBack             // answered after slow checks, never paused: say so
)

// judge is the decision of one check: err is what Dependency returned. It
// does no I/O; watchDependency carries the action out.
func judge(s depState, err error) (depState, depAction) {
	switch {
	case err == nil && s.paused:
		return depState{}, depResume
	case err == nil && s.slow > 0:
		return depState{}, depBack
	case err == nil:
		return depState{}, depNone
	case s.paused:
		return s, depNone
	case errors.Is(err, ErrSlow):
		s.slow++
		switch {
		case s.slow >= slowChecks:
			return depState{paused: true, slow: s.slow}, depPause
		case s.slow == 1:
			return s, depSlow
		}
		return s, depNone
	}
	return depState{paused: true}, depPause
}

// watchDependency pauses fetching while Dependency is down and resumes it
// once it answers again, checking every second while it is up and with
// backoff (up to 5 s) while it is down. An answer that does not come
// within 2 s (ErrSlow) pauses fetching only once slowChecks of them come
// in a row; until then the next check starts at once.
func (p *Pipeline) watchDependency(ctx context.Context) {
	if p.opts.Dependency == nil {
		return
	}
	var (
		state  depState
		topics []string // the topics this loop paused
		since  time.Time
		wait   = time.Second
	)
	for backoff.Sleep(ctx, wait) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.opts.Dependency(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrSlow) {
			p.metrics.dependencySlow.Inc()
		}
		var act depAction
		state, act = judge(state, err)
		p.depFailing.Store(err != nil)
		switch act {
		case depSlow:
			wait = 0
			p.log.Warn("dependency slow: fetching goes on, and pauses if it stays slow", "error", err, "pause_after_checks", slowChecks)
		case depPause:
			topics, since, wait = p.cl.GetConsumeTopics(), time.Now(), time.Second
			p.cl.PauseFetchTopics(topics...)
			p.metrics.paused.Set(1)
			p.log.Error("dependency down: fetching paused until it answers (nothing is skipped or dead-lettered because of it)", "error", err)
		case depResume:
			p.cl.ResumeFetchTopics(topics...)
			wait = time.Second
			p.metrics.paused.Set(0)
			p.log.Info("dependency back: fetching resumed", "paused_for", time.Since(since).Round(time.Second))
		case depBack:
			wait = time.Second
			p.log.Info("dependency answers in time again")
		default:
			if state.paused {
				wait = min(2*wait, 5*time.Second)
			}
		}
	}
}

func (p *Pipeline) lagLoop(ctx context.Context) {
	adm := kadm.NewClient(p.cl)
	t := time.NewTicker(p.opts.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lags, err := adm.Lag(ctx, p.opts.Group)
		if err != nil {
			continue
		}
		lags.Each(func(l kadm.DescribedGroupLag) {
			for topic, total := range l.Lag.TotalByTopic() {
				p.metrics.lag.WithLabelValues(topic).Set(float64(total.Lag))
			}
		})
	}
}
