// Command feedbackd consumes delivery-feedback events from Kafka and sends
// them to tenants' webhooks, signed, with retries and a dead-letter topic.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/embedded"
	"github.com/feedbackd/feedbackd/pkg/tracing"
)

// Set at build time: -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

const usage = `feedbackd delivers delivery-feedback events from Kafka to tenants' webhooks.

Usage:
  feedbackd [--config FILE] [flags]     run against your Kafka and Redis
  feedbackd --embedded [flags]          try it: everything in one process

Examples:
  # Real use: Kafka and Redis from the config file; the admin token and the key
  # that encrypts secrets at rest from the environment (keep the key: only it
  # opens the stored secrets).
  export FEEDBACKD_ADMIN_TOKEN=$(openssl rand -hex 24) FEEDBACKD_SECRETS_KEYS=$(openssl rand -base64 32)
  feedbackd --config config/feedbackd.yaml

  # Check a configuration without starting anything (exit 0 if valid, 2 if not).
  feedbackd --config config/feedbackd.yaml --check-config

  # Override any key with FEEDBACKD_<KEY> (dots become underscores, lists are comma-separated).
  FEEDBACKD_KAFKA_BROKERS=k1:9092,k2:9092 FEEDBACKD_RETRY_SCHEDULE=10s,1m,10m feedbackd

  # Try it out: in-process Kafka-protocol broker and Redis, a demo receiver and sample events.
  feedbackd --embedded
  feedbackd --embedded --demo=false --http-addr 127.0.0.1:18080

Configuration keys are documented in config/feedbackd.yaml and the README.

Flags:
`

func main() { os.Exit(run()) }

func run() int {
	flags := pflag.NewFlagSet("feedbackd", pflag.ContinueOnError)
	flags.Usage = func() {} // --help is answered below, on stdout
	configFile := flags.String("config", "", "configuration file (default: "+defaultConfigFile+" if it exists; embedded mode reads one only when given)")
	flags.String("http-addr", "", "admin API, health and metrics listen address (http.addr)")
	flags.StringSlice("kafka-brokers", nil, "Kafka seed brokers (kafka.brokers)")
	flags.String("redis-addr", "", "Redis host:port or redis:// URL (redis.addr)")
	flags.String("log-level", "", "debug, info, warn or error (log.level)")
	flags.String("log-format", "", "json or text (log.format)")
	showVersion := flags.Bool("version", false, "print the version and exit")
	checkConfig := flags.Bool("check-config", false, "check the configuration (file, FEEDBACKD_ variables, flags, the key and JWT files it names) and exit: 0 if it is valid, 2 if not; connects to nothing")
	pprofAddr := flags.String("pprof-addr", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off by default, never expose it")
	emb := embedded.Options{}
	isEmbedded := flags.Bool("embedded", false, "run an in-process broker, Redis, demo receiver and sample events (not for production)")
	flags.StringVar(&emb.KafkaAddr, "embedded-kafka-addr", "127.0.0.1:9092", "embedded mode: broker listen address")
	flags.StringVar(&emb.RedisAddr, "embedded-redis-addr", "127.0.0.1:6379", "embedded mode: Redis listen address")
	flags.StringVar(&emb.DataDir, "embedded-data-dir", ".feedbackd", "embedded mode: where the broker keeps its data")
	flags.BoolVar(&emb.Demo, "demo", true, "embedded mode: run the demo receiver and sample events")
	flags.StringVar(&emb.ReceiverAddr, "demo-receiver-addr", "127.0.0.1:8090", "embedded mode: demo receiver listen address")
	flags.DurationVar(&emb.Interval, "demo-interval", embedded.DefaultInterval, "embedded mode: time between sample events")

	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Print(usage + flags.FlagUsages())
			return 0
		}
		fmt.Fprintf(os.Stderr, "feedbackd: %v\nRun feedbackd --help for the flags.\n", err)
		return 2
	}
	if *showVersion {
		fmt.Println("feedbackd", version, revision)
		return 0
	}

	cfg, isSet, file, err := loadConfig(flags, *configFile, !*isEmbedded)
	if err != nil {
		fmt.Fprintln(os.Stderr, "feedbackd:", err)
		return 2
	}
	if *isEmbedded {
		embedded.Adjust(&cfg, isSet, emb)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "feedbackd: invalid configuration:\n%v\n", err)
		return 2
	}
	if *checkConfig {
		return check(cfg, file, *isEmbedded)
	}
	log := newLogger(cfg.Log)
	redis.SetLogger(redisLogger{log.With("component", "redis-client")}) // process-wide, so set here
	// OpenTelemetry reports spans it could not export here (process-wide too).
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: "+err.Error(), "component", "tracing") }))
	if file != "" {
		log.Info("configuration file read", "file", file)
	}
	switch soft, container, from, err := memoryLimit(os.Getenv, cgroupMemoryFiles); {
	case err != nil:
		log.Warn("soft memory limit not set: "+err.Error(), "file", from)
	case soft > 0:
		debug.SetMemoryLimit(soft)
		log.Info("soft memory limit set under the container's (GOMEMLIMIT not set)",
			"limit_mib", soft>>20, "container_mib", container>>20, "file", from)
	}

	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			fmt.Fprintln(os.Stderr, "feedbackd: --pprof-addr:", err)
			return 2
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := daemon.Options{Version: version, Revision: revision, Logger: log, Registry: reg}

	if *isEmbedded {
		err = embedded.Run(ctx, cfg, emb, opts)
	} else {
		err = daemon.Run(ctx, cfg, opts)
	}
	if err != nil {
		log.Error("feedbackd failed", "error", err)
		return 1
	}
	return 0
}

// check is --check-config: what Validate cannot see without reading the
// files the configuration names (keys, JWT verification keys), then a
// summary on stdout.
func check(cfg daemon.Config, file string, isEmbedded bool) int {
	if !isEmbedded {
		if _, err := cfg.Keyring(); err != nil {
			fmt.Fprintf(os.Stderr, "feedbackd: invalid configuration:\n%v\n", err)
			return 2
		}
	}
	if _, err := cfg.AdminAuth(); err != nil {
		fmt.Fprintf(os.Stderr, "feedbackd: invalid configuration:\n%v\n", err)
		return 2
	}
	if _, err := tracing.Enabled(os.Getenv); err != nil {
		fmt.Fprintf(os.Stderr, "feedbackd: invalid tracing environment:\n%v\n", err)
		return 2
	}
	if file == "" {
		file = "(none: defaults, FEEDBACKD_ variables and flags)"
	}
	fmt.Printf("configuration is valid\n  file:    %s\n  kafka:   %s (group %s)\n  redis:   %s\n  http:    %s\n",
		file, strings.Join(cfg.Kafka.Brokers, ","), cfg.Kafka.Group, cfg.Redis.Describe(), cfg.HTTP.Addr)
	return 0
}

// redisLogger sends go-redis's own messages (connection pool trouble) to
// slog instead of the standard logger, so JSON logs stay JSON.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

func newLogger(c daemon.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	o := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, o))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, o))
}
