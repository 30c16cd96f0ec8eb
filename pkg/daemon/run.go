// Package daemon assembles feedbackd from its parts: it creates the topics,
// the Kafka and Redis clients, the config store, the delivery client, the
// pipeline and the HTTP server, and runs them until the context ends.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackd/feedbackd/pkg/admin"
	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/console"
	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/deliverylog"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/failclock"
	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/pipeline"
	"github.com/feedbackd/feedbackd/pkg/replay"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/topics"
	"github.com/feedbackd/feedbackd/pkg/tracing"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Options are the parts of a run that do not come from configuration.
type Options struct {
	Version  string
	Revision string // VCS revision the binary was built from
	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics are registered and served from here
	// DeliveryTLS overrides the TLS configuration of deliveries (tests use
	// it to trust their own CA); nil means the system roots.
	DeliveryTLS *tls.Config
	// Listening, if set, is called with the HTTP listener's address once it
	// accepts connections.
	Listening func(addr net.Addr)
	// Resolver resolves endpoint host names (tests use it to play DNS);
	// nil means the system resolver.
	Resolver netguard.Resolver
}

// Run runs feedbackd until ctx ends, then shuts down in order: the HTTP
// server stops taking requests, the pipeline drains and commits (bounded by
// shutdown.timeout), the config sync stops. It returns nil after a clean
// stop and an error if a part could not start.
func Run(ctx context.Context, cfg Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Name: "feedbackd_build_info",
		Help: "Always 1; labels say which build is running.",
	}, []string{"version", "revision", "goversion"}).WithLabelValues(opts.Version, opts.Revision, runtime.Version()).Set(1)

	// Every Kafka client connects the same way (brokers, TLS, SASL) and
	// says what it is for in broker logs and client metrics.
	kconn := cfg.Kafka.Conn()
	connOpts, err := kconn.Opts()
	if err != nil {
		return err
	}
	for _, w := range kconn.Warnings(kafkaconn.DaemonKeys) {
		log.Warn("kafka: " + w)
	}
	kopts := func(role string) []kgo.Opt {
		return append(slices.Clone(connOpts), kgo.ClientID(cfg.Kafka.ClientID+"-"+role))
	}
	if err := connectKafka(ctx, kconn, kopts("admin"), log); err != nil {
		return err
	}
	if err := ensureTopics(ctx, cfg, kconn, kopts("admin"), log); err != nil {
		return err
	}
	if err := checkAccess(ctx, cfg, kconn, kopts("admin")); err != nil {
		if ke, ok := errors.AsType[*kafkaconn.Error](err); !ok || ke.Permanent {
			return err
		}
		log.Warn(err.Error()) // a missing topic: the consumers wait for it
	}

	tracer, stopTracing, err := startTracing(ctx, opts.Version, log)
	if err != nil {
		return err
	}
	defer stopTracing() // after the pipeline has drained: its last spans are exported

	keyring, err := cfg.Keyring()
	if err != nil {
		return err
	}
	adminAuth, err := cfg.AdminAuth()
	if err != nil {
		return err
	}
	rcfg := cfg.Redis
	rcfg.PoolSize = cfg.RedisPoolSize()
	rdb, err := rcfg.NewRedisClient()
	if err != nil {
		return err
	}
	defer rdb.Close()
	registerPoolStats(reg, rdb, rcfg.PoolSize)
	if err := checkRedis(ctx, cfg.Redis, rdb, log); err != nil {
		return err
	}
	// Health checks have a connection of their own: behind a pool that
	// thousands of deliveries keep busy, a ping would time out with Redis up.
	checkRDB, err := cfg.Redis.NewRedisCheckClient()
	if err != nil {
		return err
	}
	defer checkRDB.Close()
	redisCheck := newRedisHealth(cfg.Redis, checkRDB, reg).Check

	producer, err := kgo.NewClient(append(kopts("configs"), kgo.DefaultProduceTopic(cfg.Kafka.Topics.Configs))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer producer.Close()
	store := configstore.New(producer, kopts("configs-sync"), rdb, configstore.Options{
		Topic:         cfg.Kafka.Topics.Configs,
		KeyPrefix:     cfg.Redis.KeyPrefix,
		CacheTTL:      cfg.Configs.CacheTTL,
		CacheSize:     cfg.Configs.CacheSize,
		CheckInterval: cfg.Configs.CheckInterval,
		Keyring:       keyring,
		Logger:        log.With("component", "configs"),
		Registerer:    reg,
	})

	guard := cfg.Guard(opts.Resolver)
	slots := max(cfg.Delivery.Concurrency, cfg.Delivery.MaxInflight)
	files := openFileLimit()
	conns, short := deliveryConns(slots, files)
	if short {
		log.Warn("open-file limit below what the delivery slots need: connections may fail with \"too many open files\"; raise it (ulimit -n, LimitNOFILE=) or lower delivery.max_inflight",
			"limit", files, "need", slots+openFilesReserved, "slots", slots, "connections", conns)
	}
	sender := deliver.New(deliver.Options{
		Timeout:          cfg.Delivery.Timeout,
		MaxResponseBytes: cfg.Delivery.MaxResponseBytes,
		ResponseBytes:    responseBytes(cfg),
		// Every slot may hold a connection to the same host (tenants often
		// share a receiver): keep them all for reuse rather than dial again
		// (and as many over all hosts, or 4,096: MaxIdleConns's default).
		MaxIdleConnsPerHost: slots,
		MaxConns:            conns,
		Guard:               guard,
		UserAgent:           "feedbackd/" + opts.Version,
		TLSConfig:           opts.DeliveryTLS,
		Registerer:          reg,
		Proxy:               cfg.Delivery.ProxyURL(),
	})
	defer sender.Close()
	if u := cfg.Delivery.ProxyURL(); u != nil {
		// host:port only: the URL may hold the proxy's password.
		log.Info("deliveries and OAuth2 token requests go through an egress proxy", "delivery.proxy", deliver.ProxyAddr(u))
	}

	admit := admission.New(rdb, admission.Options{
		KeyPrefix:    cfg.Redis.KeyPrefix,
		Limit:        cfg.Delivery.EndpointConcurrency,
		Threshold:    cfg.Delivery.Breaker.Threshold,
		BaseCooldown: cfg.Delivery.Breaker.Cooldown,
		MaxCooldown:  cfg.Delivery.Breaker.MaxCooldown,
		Logger:       log.With("component", "admission"),
		Registerer:   reg,
	})

	// The delivery log; typed nils are kept out of the interfaces.
	var (
		dlog     *deliverylog.Log
		outLog   pipeline.OutcomeLog
		adminLog admin.DeliveryLog
	)
	if cfg.DeliveryLog.Enabled {
		dlog = deliverylog.New(rdb, deliverylog.Options{
			KeyPrefix:  cfg.Redis.KeyPrefix,
			PerConfig:  cfg.DeliveryLog.PerConfig,
			MaxAge:     cfg.DeliveryLog.MaxAge,
			Logger:     log.With("component", "delivery-log"),
			Registerer: reg,
		})
		outLog, adminLog = dlog, dlog
	}

	var dd pipeline.Deduper
	if cfg.Delivery.DedupeWindow > 0 {
		delivered := dedupe.New(rdb, cfg.Redis.KeyPrefix, cfg.Delivery.DedupeWindow, reg)
		defer delivered.Close()
		dd = delivered
	}

	var clock pipeline.FailClock
	var runClock func(context.Context)
	if cfg.Delivery.DisableAfter > 0 {
		c := failclock.New(rdb, failclock.Options{
			KeyPrefix: cfg.Redis.KeyPrefix, After: cfg.Delivery.DisableAfter,
			Logger: log.With("component", "failclock"), Registerer: reg,
		})
		clock, runClock = c, c.Run
	}

	// franz-go's own metrics (connections, bytes, errors, buffered records)
	// for the client that carries the data: feedbackd_kafka_*.
	pipe, err := pipeline.New(append(kopts("pipeline"), kgo.WithHooks(kafkaMetrics(reg)), kgo.SessionTimeout(cfg.Kafka.SessionTimeout)), store, sender, pipeline.Options{
		Group:         cfg.Kafka.Group,
		InputTopics:   cfg.Kafka.Topics.Input,
		RetryPrefix:   cfg.Kafka.Topics.RetryPrefix,
		DLQTopic:      cfg.Kafka.Topics.DLQ,
		OutcomesTopic: cfg.OutcomesTopic(),
		OutcomesKafka: kopts("outcomes"),
		Log:           outLog,
		Instance:      instanceName(),
		Policy:        cfg.RetryPolicy(),
		Concurrency:   cfg.Delivery.Concurrency,
		MaxInflight:   cfg.Delivery.MaxInflight,
		Admission:     admit,
		Dedupe:        dd,
		FailClock:     clock,
		// An attempt lasts at most delivery.timeout; recording its outcome
		// may wait for Redis a little longer.
		ClaimTTL:        cfg.Delivery.Timeout + 15*time.Second,
		Dependency:      redisCheck,
		MaxParked:       cfg.Delivery.MaxParked,
		ShutdownTimeout: cfg.Shutdown.Timeout,
		LagInterval:     cfg.Kafka.LagInterval,
		Logger:          log.With("component", "pipeline"),
		Registerer:      reg,
		Tracer:          tracer,
	})
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	bufferedGauges(reg, pipe.Client())

	// Jobs stop (interrupted, resumable) when Run returns, also when it
	// returns without ctx ending (a refused start).
	jobsCtx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	replays := replay.NewJobs(jobsCtx, kopts("replay"), rdb, cfg.Redis.KeyPrefix, replay.Options{
		DLQTopic:    cfg.Kafka.Topics.DLQ,
		InputTopics: cfg.Kafka.Topics.Input,
		GroupPrefix: cfg.Kafka.Group + "-replay-",
		Logger:      log.With("component", "replay"),
	})
	// A recovery interrupted by a stop or a crash is resumed by whichever
	// instance is up once its lease has expired.
	replays.ResumeRecoveries(15 * time.Second)
	handler := admin.NewHandler(store, sender, admin.Options{
		Auth:          adminAuth,
		Policy:        webhook.Policy{AllowHTTP: cfg.Delivery.AllowHTTP, Guard: guard},
		RotationGrace: cfg.Secrets.RotationGrace,
		Checks: []admin.Check{
			{Name: "kafka", Func: func(ctx context.Context) error { return kconn.Explain(pipe.Ping(ctx)) }},
			{Name: "redis", Func: redisCheck},
			{Name: "configs", Func: func(context.Context) error {
				if !store.Loaded() {
					return configstore.ErrNotLoaded
				}
				return nil
			}},
			{Name: "secrets", Func: store.SecretsErr},
		},
		Replays:     replays,
		DeadLetters: dlqReader{opts: kopts("dlq-read"), topic: cfg.Kafka.Topics.DLQ},
		Log:         adminLog,
		Breakers:    admit,
		Gatherer:    reg,
		Logger:      log.With("component", "admin"),
	})
	if cfg.HTTP.UI {
		handler = withConsole(handler, console.New(handler, console.Options{
			Auth: adminAuth, PlainHTTP: cfg.HTTP.UIPlainHTTP, Logger: log.With("component", "console"),
		}))
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	if cfg.Delivery.AllowHTTP || cfg.Delivery.AllowPrivateNetworks {
		log.Warn("webhook URLs may use plain http or reach private addresses: for tests and development only",
			"delivery.allow_http", cfg.Delivery.AllowHTTP, "delivery.allow_private_networks", cfg.Delivery.AllowPrivateNetworks)
	}
	log.Info("feedbackd started", "version", opts.Version, "http", ln.Addr().String(), "brokers", cfg.Kafka.Brokers,
		"group", cfg.Kafka.Group, "redis", cfg.Redis.Describe(), "redis_pool", rcfg.PoolSize, "retry_tiers", len(cfg.RetryPolicy().Tiers()))
	if opts.Listening != nil {
		opts.Listening(ln.Addr())
	}

	var wg sync.WaitGroup
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { _ = store.Run(storeCtx) })
	wg.Go(func() { _ = admit.Run(storeCtx) })
	if runClock != nil {
		wg.Go(func() { runClock(storeCtx) })
	}
	if dlog != nil {
		// Stopped after the pipeline has drained: its last records are written.
		wg.Go(func() { _ = dlog.Run(storeCtx) })
	}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "error", err)
		}
	})
	waitForConfigs(ctx, store, cfg.Kafka.Topics.Configs, log)
	var pipeErr error
	if err := store.CheckSecrets(ctx); errors.Is(err, configstore.ErrKeyMissing) {
		// An operator's error: consuming would only make every event wait.
		pipeErr = fmt.Errorf("secrets: %w: start with the key that sealed them in secrets.keys or secrets.key_file (a new key goes first, the old ones after it)", err)
	} else {
		pipeErr = pipe.Run(ctx) // returns after draining once ctx ends
	}

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	stopJobs()
	replays.Wait() // jobs stop with ctx, resumable
	stopStore()
	wg.Wait()
	log.Info("feedbackd stopped")
	return pipeErr
}

// waitForConfigs holds start-up until this instance has read the configs
// topic into Redis: routing events with no configs would skip them all.
// It returns when the configs are loaded or ctx ends.
func waitForConfigs(ctx context.Context, store *configstore.Store, topic string, log *slog.Logger) {
	start := time.Now()
	nextLog := start.Add(5 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !store.Loaded() {
		if time.Now().After(nextLog) {
			log.Warn("waiting for the webhook configs: no event is consumed until the configs topic is read into Redis (is Kafka or Redis down?)",
				"topic", topic, "waited", time.Since(start).Round(time.Second))
			nextLog = time.Now().Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		log.Info("webhook configs loaded; consuming events", "waited", waited.Round(time.Second))
	}
}

// connectKafka waits until a broker answers and accepts the credentials.
// Each failure is logged at once as one line naming the cause; a cause
// that retrying cannot cure (credentials, certificates, mechanism, ACLs)
// ends start-up with that line.
func connectKafka(ctx context.Context, kconn *kafkaconn.Config, kopts []kgo.Opt, log *slog.Logger) error {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := kconn.Check(cctx, kopts...)
		cancel()
		if err == nil {
			return nil
		}
		if ke, ok := errors.AsType[*kafkaconn.Error](err); ok && ke.Permanent {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka unreachable at start-up: %w", err)
		}
		log.Warn(err.Error(), "brokers", kconn.Brokers, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka unreachable at start-up: %w", err)
		case <-time.After(backoff):
		}
	}
}

// startTracing builds the tracer the OTEL_* variables ask for (package
// tracing): nil when tracing is off. stop exports the spans still buffered,
// for at most 5 s.
func startTracing(ctx context.Context, version string, log *slog.Logger) (trace.Tracer, func(), error) {
	tp, err := tracing.New(ctx, tracing.Options{Version: version})
	if err != nil || tp == nil {
		return nil, func() {}, err
	}
	log.Info("tracing on: spans exported with OTLP over HTTP", "endpoint", tp.Endpoint())
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing: spans not exported at shutdown", "error", err)
		}
	}
	return tp.Tracer(), stop, nil
}

// responseBytes is how much of each answer's body attempt records keep.
func responseBytes(cfg Config) int {
	if cfg.OutcomesTopic() == "" && !cfg.DeliveryLog.Enabled {
		return 0
	}
	return min(cfg.Outcomes.ResponseBytes, int(cfg.Delivery.MaxResponseBytes))
}

// instanceName names this instance in outcome records: the host name (a
// pod's name on Kubernetes) and the process id.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

// checkAccess refuses to start when the principal lacks an ACL feedbackd
// needs (README "Kafka ACLs"): otherwise the pipeline would start and then
// stall on that topic or group. A missing topic is returned as an error
// that is not Permanent.
func checkAccess(ctx context.Context, cfg Config, kconn *kafkaconn.Config, kopts []kgo.Opt) error {
	rw := []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite}
	need := kafkaconn.Need{
		Topics: map[string][]kmsg.ACLOperation{
			cfg.Kafka.Topics.Configs:           rw,
			cfg.Kafka.Topics.DLQ:               rw, // read by replay jobs
			cfg.Kafka.Topics.DLQ + ".replayed": rw,
		},
		Groups: map[string][]kmsg.ACLOperation{cfg.Kafka.Group: {kmsg.ACLOperationRead}},
	}
	for _, t := range cfg.Kafka.Topics.Input {
		need.Topics[t] = rw // written by replay jobs, read and written by recovery jobs
	}
	if t := cfg.OutcomesTopic(); t != "" {
		need.Topics[t] = []kmsg.ACLOperation{kmsg.ACLOperationWrite}
	}
	for _, tier := range cfg.RetryPolicy().Tiers() {
		need.Topics[retry.Topic(cfg.Kafka.Topics.RetryPrefix, tier)] = rw
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = kconn.CheckAccess(cctx, cl, need)
	if ke, ok := errors.AsType[*kafkaconn.Error](err); ok && !cfg.Kafka.CreateTopics && strings.Contains(ke.Msg, "does not exist") {
		return &kafkaconn.Error{Msg: ke.Msg + "; kafka.create_topics is false: create it (README \"Topics and payloads\") or set it to true"}
	}
	return err
}

// ensureTopics creates missing topics, waiting for Kafka to answer.
func ensureTopics(ctx context.Context, cfg Config, kconn *kafkaconn.Config, kopts []kgo.Opt, log *slog.Logger) error {
	if !cfg.Kafka.CreateTopics {
		return nil
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	specs := []topics.Spec{
		{Name: cfg.Kafka.Topics.DLQ, Partitions: cfg.Kafka.Partitions},
		{Name: cfg.Kafka.Topics.Configs, Partitions: 1, Configs: topics.Compacted()},
		{Name: cfg.Kafka.Topics.DLQ + ".replayed", Partitions: 1, Configs: topics.Compacted()},
	}
	for _, t := range cfg.Kafka.Topics.Input {
		specs = append(specs, topics.Spec{Name: t, Partitions: cfg.Kafka.Partitions})
	}
	if t := cfg.OutcomesTopic(); t != "" {
		specs = append(specs, topics.Spec{Name: t, Partitions: cfg.Kafka.Partitions})
	}
	for _, tier := range cfg.RetryPolicy().Tiers() {
		specs = append(specs, topics.Spec{Name: retry.Topic(cfg.Kafka.Topics.RetryPrefix, tier), Partitions: cfg.Kafka.Partitions})
	}
	adm := kadm.NewClient(cl)
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		err := topics.Ensure(ctx, adm, specs...)
		if err == nil {
			return nil
		}
		if ke := kconn.Explain(err).(*kafkaconn.Error); ke.Permanent {
			return fmt.Errorf("%s; kafka.create_topics is true: grant Create, or create the topics and set it to false", ke.Msg)
		}
		log.Warn("waiting for Kafka to create topics: "+kconn.Explain(err).Error(), "brokers", cfg.Kafka.Brokers, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka unreachable at start-up: %w", err)
		case <-time.After(backoff):
		}
	}
}

// withConsole serves the console at /ui/ next to the admin API.
func withConsole(api http.Handler, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, ui)
	mux.Handle("/", api)
	return mux
}

// dlqReader reads the dead-letter topic for GET /v1/dlq, with a client of
// its own per call and no consumer group.
type dlqReader struct {
	opts  []kgo.Opt
	topic string
}

func (d dlqReader) Scan(ctx context.Context, fn func(dlq.Record) bool) error {
	return dlq.Scan(ctx, d.opts, d.topic, fn)
}
