// Package deliverylog keeps the recent outcome records of each webhook
// config in Redis (attempts, outcomes and endpoint events, package
// outcome), for the admin API: "what did my endpoint answer yesterday at
// 10:02?", "did event X reach us?", "is my endpoint healthy?".
//
// Each config has a Redis stream, <prefix>log:{<imsOrg>/<sandboxId>}, one
// entry per record (field "r": the record's JSON), trimmed to about
// PerConfig entries (XADD MAXLEN ~) and to MaxAge (XTRIM MINID ~ at every
// batch, and the stream expires MaxAge after its last write, so a config
// that stops receiving events leaves nothing behind). Counts by outcome are
// kept apart, in one hash per config and ten minutes,
// <prefix>log-counts:{<imsOrg>/<sandboxId>}:<unix start>, expiring after
// 25 hours, so that the last hour's and day's counts are right however few
// entries the stream holds; the last success and the last failure are in
// <prefix>log-last:{<imsOrg>/<sandboxId>} (30 days). The hash tag keeps a
// config's keys on one Cluster node.
//
// Writing never holds a delivery back: Add puts records on a bounded buffer
// (when it is full they are dropped and counted), and Run writes them in
// batches, one pipelined round trip each. A batch Redis refuses is counted
// and dropped, not retried: the log is a view, the outcomes topic and the
// dead-letter topic are the records of what happened.
package deliverylog

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// Defaults of Options.
const (
	DefaultPerConfig = 1000
	DefaultMaxAge    = 72 * time.Hour
	defaultBuffer    = 10_000
	defaultBatch     = 500
	defaultFlush     = 50 * time.Millisecond
)

// Bucket is the width of a count bucket: "the last hour" is the current
// bucket and the five before it, "the last day" the current and the 143
// before it.
const Bucket = 10 * time.Minute

const (
	countsTTL = 25 * time.Hour
	lastTTL   = 30 * 24 * time.Hour
)

// Options configure a Log.
type Options struct {
	KeyPrefix string        // Redis key prefix, e.g. "feedbackd:"
	PerConfig int           // entries kept per config (about); default 1000
	MaxAge    time.Duration // entries older than this are trimmed; default 72h
	// Buffer bounds the records waiting to be written; default 10,000.
	Buffer int
	// Batch is the most records one round trip writes; default 500.
	Batch int
	// FlushEvery is the longest a record waits in the buffer; default 50ms.
	FlushEvery time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.PerConfig <= 0 {
		o.PerConfig = DefaultPerConfig
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Buffer <= 0 {
		o.Buffer = defaultBuffer
	}
	if o.Batch <= 0 {
		o.Batch = defaultBatch
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = defaultFlush
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

// Metrics are the package's Prometheus metrics.
type Metrics struct {
	writes  prometheus.Counter
	errors  prometheus.Counter
	dropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		writes: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_delivery_log_writes_total",
			Help: "Outcome records written to the delivery log in Redis.",
		}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_delivery_log_write_errors_total",
			Help: "Outcome records not written to the delivery log because Redis refused or did not answer (dropped, not retried).",
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_delivery_log_dropped_total",
			Help: "Outcome records dropped before reaching Redis because the delivery log's buffer was full.",
		}),
	}
}

// Log writes and reads the delivery log. It is safe for concurrent use.
// Add may be called before Run starts and after it returned (records then
// wait in the buffer, or are dropped when it is full); reads need no Run.
type Log struct {
	rdb     redis.UniversalClient
	opts    Options
	metrics *Metrics
	queue   chan *outcome.Record
	running atomic.Bool
	// Owned by Run: when the last write error was logged, and the records
	// lost since.
	warned time.Time
	lost   int
}

// warnEvery: with Redis down a batch fails every FlushEvery; one line says
// so every 10 s, with the records lost since the last one.
const warnEvery = 10 * time.Second

// New returns a Log on rdb. Call Run to write what Add is given.
func New(rdb redis.UniversalClient, opts Options) *Log {
	opts.defaults()
	return &Log{rdb: rdb, opts: opts, metrics: newMetrics(opts.Registerer), queue: make(chan *outcome.Record, opts.Buffer)}
}

// Add queues recs to be written; it never blocks. Records with no
// organisation (an event that did not decode) belong to no config and are
// skipped. When the buffer is full a record is dropped and counted.
func (l *Log) Add(recs []*outcome.Record) {
	for _, r := range recs {
		if r == nil || r.Org == "" {
			continue
		}
		select {
		case l.queue <- r:
		default:
			l.metrics.dropped.Inc()
		}
	}
}

// Run writes queued records until ctx ends: a batch when Batch records are
// waiting or the oldest has waited FlushEvery. When ctx ends it writes what
// is still queued (each batch with at most 5 seconds for Redis) and returns
// nil. Run
// must not be called twice at the same time.
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		panic("deliverylog: Run called twice")
	}
	defer l.running.Store(false)
	batch := make([]*outcome.Record, 0, l.opts.Batch)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				batch = l.fill(batch)
				if len(batch) == 0 {
					return nil
				}
				l.write(ctx, batch)
				batch = batch[:0]
			}
		case r := <-l.queue:
			batch = append(batch, r)
			t.Reset(l.opts.FlushEvery)
		collect:
			for len(batch) < l.opts.Batch {
				select {
				case r := <-l.queue:
					batch = append(batch, r)
				case <-t.C:
					break collect
				case <-ctx.Done():
					break collect
				}
			}
			t.Stop()
			l.write(ctx, batch)
			batch = batch[:0]
		}
	}
}

// fill moves what is queued to batch, up to Batch records, without
// waiting.
func (l *Log) fill(batch []*outcome.Record) []*outcome.Record {
	for len(batch) < l.opts.Batch {
		select {
		case r := <-l.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// Keys of a config ("<imsOrg>/<sandboxId>").
func (l *Log) streamKey(cfg string) string { return l.opts.KeyPrefix + "log:{" + cfg + "}" }
func (l *Log) countsKey(cfg string, bucket int64) string {
	return l.opts.KeyPrefix + "log-counts:{" + cfg + "}:" + strconv.FormatInt(bucket, 10)
}
func (l *Log) lastKey(cfg string) string { return l.opts.KeyPrefix + "log-last:{" + cfg + "}" }

func configKey(org, sandbox string) string { return org + "/" + sandbox }

// bucketOf is the start (Unix seconds) of the count bucket t falls in.
func bucketOf(t time.Time) int64 {
	w := int64(Bucket / time.Second)
	return t.Unix() / w * w
}

// countField is the counts hash field of a record of type typ:
// "attempt:<label>", "outcome:<kind>" or "event:<type>".
func countField(typ, outcomeName string) string {
	switch typ {
	case outcome.TypeAttempt:
		return "attempt:" + outcomeName
	case outcome.TypeOutcome:
		return "outcome:" + outcomeName
	}
	return "event:" + typ
}

// Failure is the last failure of a config.
type Failure struct {
	Time       time.Time `json:"time"`
	WebhookID  string    `json:"webhookId,omitempty"`
	Outcome    string    `json:"outcome"`
	ErrorClass string    `json:"errorClass,omitempty"`
	HTTPStatus int       `json:"httpStatus,omitempty"`
}

// failed says whether r is a failure the health report names: an attempt
// that did not succeed, or a dead letter.
func failed(r *outcome.Record) bool {
	switch r.Type {
	case outcome.TypeAttempt:
		return r.Outcome != "success"
	case outcome.TypeOutcome:
		return r.Outcome == "dead_lettered" || r.Outcome == "dead_letter_lost"
	}
	return false
}

// writeTimeout bounds one batch's round trip. It does not end with Run's
// context, so that what was taken from the buffer is written at a stop.
const writeTimeout = 5 * time.Second

// write makes one batch in one pipelined round trip. Keys and counts are
// gathered per config first: a batch holds many records of few configs.
func (l *Log) write(ctx context.Context, batch []*outcome.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	type tenant struct{ org, sandbox string }
	type count struct {
		bucket      int64
		typ, result string
	}
	type config struct {
		stream  string
		counts  map[count]int64
		success time.Time
		failure *Failure
	}
	configs := map[tenant]*config{}
	p := l.rdb.Pipeline()
	n := 0
	for _, r := range batch {
		v := r.Value // encoded for the outcomes topic already, if on
		if v == nil {
			var err error
			if v, err = r.Marshal(); err != nil { // a Record always encodes
				l.metrics.errors.Inc()
				continue
			}
		}
		c := configs[tenant{r.Org, r.Sandbox}]
		if c == nil {
			c = &config{stream: l.streamKey(configKey(r.Org, r.Sandbox)), counts: map[count]int64{}}
			configs[tenant{r.Org, r.Sandbox}] = c
		}
		p.XAdd(ctx, &redis.XAddArgs{Stream: c.stream, MaxLen: int64(l.opts.PerConfig), Approx: true, Values: []any{"r", v}})
		n++
		k := count{bucket: bucketOf(r.Time), typ: r.Type}
		if r.Type == outcome.TypeAttempt || r.Type == outcome.TypeOutcome {
			k.result = r.Outcome
		}
		c.counts[k]++
		switch {
		case r.Type == outcome.TypeAttempt && r.Outcome == "success":
			c.success = r.Time
		case failed(r):
			c.failure = &Failure{Time: r.Time, WebhookID: r.WebhookID, Outcome: r.Outcome, ErrorClass: r.ErrorClass, HTTPStatus: r.HTTPCode}
		}
	}
	minID := strconv.FormatInt(time.Now().Add(-l.opts.MaxAge).UnixMilli(), 10)
	for t, c := range configs {
		p.XTrimMinIDApprox(ctx, c.stream, minID, 0)
		p.PExpire(ctx, c.stream, l.opts.MaxAge)
		cfg := configKey(t.org, t.sandbox)
		buckets := map[int64]string{}
		for k, v := range c.counts {
			ck := buckets[k.bucket]
			if ck == "" {
				ck = l.countsKey(cfg, k.bucket)
				buckets[k.bucket] = ck
			}
			p.HIncrBy(ctx, ck, countField(k.typ, k.result), v)
		}
		for _, ck := range buckets { // after the HINCRBYs that create them
			p.Expire(ctx, ck, countsTTL)
		}
		var kv []any
		if !c.success.IsZero() {
			kv = append(kv, "success", c.success.Format(time.RFC3339Nano))
		}
		if c.failure != nil {
			b, _ := json.Marshal(c.failure)
			kv = append(kv, "failure", b)
		}
		if len(kv) > 0 {
			lk := l.lastKey(cfg)
			p.HSet(ctx, lk, kv...)
			p.PExpire(ctx, lk, lastTTL)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		l.metrics.errors.Add(float64(n))
		l.lost += n
		if now := time.Now(); now.Sub(l.warned) >= warnEvery {
			l.opts.Logger.Warn("delivery log records not written to Redis; dropped", "records", l.lost, "error", err)
			l.warned, l.lost = now, 0
		}
		return
	}
	l.metrics.writes.Add(float64(n))
}
