// Package embedded runs feedbackd with everything it needs in one process,
// for trying it out: a Kafka-protocol broker (kfake, data on disk), an
// in-memory Redis (miniredis), and optionally a demo receiver that verifies
// signatures and a trickle of sample events. It is never the default and
// says so loudly.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/pkg/secrets"
)

// DemoToken is the admin token in embedded mode unless admin.token is set.
// It is printed in the banner: it is not a secret.
const DemoToken = "feedbackd-embedded-demo-token"

// DefaultInterval is the time between sample events.
const DefaultInterval = 2 * time.Second

// Options of embedded mode.
type Options struct {
	KafkaAddr    string // 127.0.0.1:PORT
	RedisAddr    string
	DataDir      string
	Demo         bool
	ReceiverAddr string
	Interval     time.Duration
	Banner       io.Writer // nil: stderr
}

// Adjust points cfg at the embedded broker and Redis and relaxes the
// settings that only a real deployment needs; keys the user set are kept.
func Adjust(cfg *daemon.Config, isSet func(string) bool, o Options) {
	cfg.Kafka.Brokers = []string{o.KafkaAddr}
	// The in-process broker speaks plaintext without SASL.
	cfg.Kafka.TLS, cfg.Kafka.SASL = kafkaconn.TLS{}, kafkaconn.SASL{}
	cfg.Redis.Addr = o.RedisAddr
	keep := func(key string, apply func()) {
		if !isSet(key) {
			apply()
		}
	}
	// The demo token is public and private networks are allowed: listen on
	// loopback only, or anyone on the network could make feedbackd call
	// addresses inside it.
	keep("http.addr", func() { cfg.HTTP.Addr = "127.0.0.1:8080" })
	keep("admin.token", func() { cfg.Admin.Token = DemoToken })
	keep("http.ui_plain_http", func() { cfg.HTTP.UIPlainHTTP = true })
	keep("delivery.allow_http", func() { cfg.Delivery.AllowHTTP = true })
	keep("delivery.allow_private_networks", func() { cfg.Delivery.AllowPrivateNetworks = true })
	keep("retry.schedule", func() { cfg.Retry.Schedule = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second} })
	keep("kafka.partitions", func() { cfg.Kafka.Partitions = 3 })
	keep("configs.check_interval", func() { cfg.Configs.CheckInterval = time.Second })
	keep("shutdown.timeout", func() { cfg.Shutdown.Timeout = 5 * time.Second })
	keep("log.format", func() { cfg.Log.Format = "text" })
	keep("outcomes.enabled", func() { cfg.Outcomes.Enabled = true })
	keep("delivery_log.enabled", func() { cfg.DeliveryLog.Enabled = true })
	// Trying it out, an endpoint that is down for days is not a reason
	// to turn its config off.
	keep("delivery.disable_after", func() { cfg.Delivery.DisableAfter = 0 })
	if !isSet("secrets.key_file") && !isSet("secrets.keys") {
		// A key kept with the broker's data, so configs stored by an
		// earlier run still open.
		cfg.Secrets.KeyFile = filepath.Join(o.DataDir, "secrets.key")
	}
}

// ensureKeyFile creates the embedded key file if it is missing.
func ensureKeyFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := secrets.GenerateKey()
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte("# feedbackd --embedded: key encrypting secrets at rest\n"+key+"\n"), 0o600)
}

// Run starts the embedded broker and Redis, then feedbackd (and the demo),
// until ctx ends.
func Run(ctx context.Context, cfg daemon.Config, o Options, opts daemon.Options) error {
	host, portStr, err := net.SplitHostPort(o.KafkaAddr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || host != "127.0.0.1" {
		return fmt.Errorf("--embedded-kafka-addr must be 127.0.0.1:PORT, got %q", o.KafkaAddr)
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return fmt.Errorf("embedded data dir: %w", err)
	}
	if cfg.Secrets.KeyFile == filepath.Join(o.DataDir, "secrets.key") {
		if err := ensureKeyFile(cfg.Secrets.KeyFile); err != nil {
			return fmt.Errorf("embedded secrets key: %w", err)
		}
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(filepath.Join(o.DataDir, "kafka")))
	if err != nil {
		return fmt.Errorf("embedded broker on %s (is the port taken? use --embedded-kafka-addr): %w", o.KafkaAddr, err)
	}
	defer kafka.Close()
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(o.RedisAddr); err != nil {
		return fmt.Errorf("embedded Redis on %s (is the port taken? use --embedded-redis-addr): %w", o.RedisAddr, err)
	}
	defer mr.Close()

	ready := make(chan net.Addr, 1)
	opts.Listening = func(a net.Addr) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, cfg, opts) }()

	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		return err
	}
	w := o.Banner
	if w == nil {
		w = os.Stderr
	}
	printBanner(w, cfg, o, addr)
	if o.Demo {
		d := &demo{cfg: cfg, o: o, adminURL: "http://" + loopback(addr), log: opts.Logger}
		go func() {
			if err := d.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				opts.Logger.Error("demo stopped", "error", err)
			}
		}()
	}
	return <-done
}

// loopback turns a listener address like [::]:8080 into one a local client
// can dial.
func loopback(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return net.JoinHostPort("127.0.0.1", port)
}

func printBanner(w io.Writer, cfg daemon.Config, o Options, addr net.Addr) {
	api := "http://" + loopback(addr)
	token := cfg.Admin.Token
	if token != DemoToken {
		token = "$FEEDBACKD_ADMIN_TOKEN"
	}
	receiver := "off (--demo=false)"
	if o.Demo {
		receiver = "http://" + o.ReceiverAddr + "/webhook   verifies every signature, fails some on purpose"
	}
	fmt.Fprintf(w, `
==============================================================================
 feedbackd EMBEDDED MODE: for trying it out, NOT for production
==============================================================================
 Kafka-protocol broker  %s   (in-process kfake, data in %s)
 Redis                  %s   (in-process miniredis, memory only)
 Admin API              %s   (token: %s)
 Web console            %s   (sign in with the token above)
 Health / metrics       %s/readyz   %s/metrics
 Demo receiver          %s
 Retry schedule         %v, then the dead-letter topic %s

 Send your own event:
   go run ./cmd/feedbackctl produce --brokers %s config/examples/events.jsonl
   kcat -P -b %s -t feedback.bounce -k myImsOrg/my-sandbox config/examples/event.json
 Register your own webhook:
   curl -sS -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
        -d @config/examples/webhook.json %s/v1/webhooks
 Inspect dead letters:
   go run ./cmd/feedbackctl dlq list --brokers %s
 Follow every attempt and outcome (delivery receipts):
   kcat -C -b %s -t %s -o beginning -f '%%k %%s\n'
 The demo webhook's delivery log and endpoint health:
   FEEDBACKCTL_TOKEN=%s FEEDBACKCTL_ADMIN_URL=%s go run ./cmd/feedbackctl webhooks attempts %s %s
   FEEDBACKCTL_TOKEN=%s FEEDBACKCTL_ADMIN_URL=%s go run ./cmd/feedbackctl webhooks health %s %s
 Stop with Ctrl-C.
==============================================================================

`, o.KafkaAddr, o.DataDir, o.RedisAddr, api, token, consoleURL(cfg, api), api, api, receiver, cfg.Retry.Schedule, cfg.Kafka.Topics.DLQ,
		o.KafkaAddr, o.KafkaAddr, token, api, o.KafkaAddr, o.KafkaAddr, cfg.Kafka.Topics.Outcomes,
		token, api, demoOrg, demoSandbox, token, api, demoOrg, demoSandbox)
}

func consoleURL(cfg daemon.Config, api string) string {
	if !cfg.HTTP.UI {
		return "off (http.ui=false)"
	}
	return api + "/ui/"
}
