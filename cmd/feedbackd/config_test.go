package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

func flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("http-addr", "", "")
	fs.StringSlice("kafka-brokers", nil, "")
	fs.String("redis-addr", "", "")
	fs.String("log-level", "", "")
	fs.String("log-format", "", "")
	return fs
}

// The shipped file documents the defaults: it must decode to exactly them.
func TestShippedConfigFileIsTheDefaults(t *testing.T) {
	cfg, isSet, _, err := loadConfig(flagSet(), "../../config/feedbackd.yaml", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := daemon.Defaults(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config/feedbackd.yaml differs from daemon.Defaults():\n got %+v\nwant %+v", cfg, want)
	}
	if !isSet("retry.schedule") {
		t.Fatal("isSet does not reflect the file")
	}
	// The way the README runs it: the token comes from the environment.
	t.Setenv("FEEDBACKD_ADMIN_TOKEN", "from-the-environment")
	cfg, _, _, err = loadConfig(flagSet(), "../../config/feedbackd.yaml", false)
	if err != nil || cfg.Admin.Token != "from-the-environment" {
		t.Fatalf("token from the environment with the shipped file: %q, %v", cfg.Admin.Token, err)
	}
}

func TestEnvironmentAndFlagsOverride(t *testing.T) {
	t.Setenv("FEEDBACKD_KAFKA_BROKERS", "k1:9092,k2:9092")
	t.Setenv("FEEDBACKD_RETRY_SCHEDULE", "10s,1m")
	t.Setenv("FEEDBACKD_DELIVERY_ALLOW_HTTP", "true")
	t.Setenv("FEEDBACKD_ADMIN_TOKEN", "from-the-environment")
	t.Setenv("FEEDBACKD_HTTP_ADDR", ":1111")
	t.Setenv("FEEDBACKD_REDIS_POOL_SIZE", "64")
	fs := flagSet()
	if err := fs.Parse([]string{"--http-addr", ":2222"}); err != nil {
		t.Fatal(err)
	}
	cfg, isSet, _, err := loadConfig(fs, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) ||
		!reflect.DeepEqual(cfg.Retry.Schedule, []time.Duration{10 * time.Second, time.Minute}) ||
		!cfg.Delivery.AllowHTTP || cfg.Admin.Token != "from-the-environment" || cfg.HTTP.Addr != ":2222" ||
		cfg.Redis.PoolSize != 64 {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if !isSet("admin.token") || !isSet("http.addr") || isSet("log.level") {
		t.Fatal("isSet wrong")
	}
}

func TestBadFilesAreRefusedNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown.yaml":  "kafka:\n  brokerz: [a:1]\n",
		"duration.yaml": "delivery:\n  timeout: soon\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := loadConfig(flagSet(), p, false)
		want := map[string]string{"unknown.yaml": "brokerz", "duration.yaml": "timeout"}[name]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, want)
		}
	}
	if _, _, _, err := loadConfig(flagSet(), filepath.Join(dir, "missing.yaml"), false); err == nil {
		t.Error("missing file accepted")
	}
}

// A FEEDBACKD_ variable that names no key is refused, as a misspelled key
// in the file is, and the nearest key is suggested.
func TestUnknownVariablesAreRefused(t *testing.T) {
	t.Setenv("FEEDBACKD_RETRY_SCHEDUL", "1s")
	t.Setenv("FEEDBACKD_REQUIRE_TOOLS", "1")                      // the tests' own, not a key
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // OpenTelemetry's (README "Tracing")
	_, _, _, err := loadConfig(flagSet(), "", false)
	if err == nil || !strings.Contains(err.Error(), "FEEDBACKD_RETRY_SCHEDUL names no configuration key (did you mean FEEDBACKD_RETRY_SCHEDULE?)") {
		t.Fatalf("loadConfig = %v", err)
	}
	if strings.Contains(err.Error(), "REQUIRE_TOOLS") || strings.Contains(err.Error(), "OTEL_") {
		t.Errorf("a variable that is not feedbackd's refused: %v", err)
	}
}

// --check-config reads the files the configuration names and prints a
// summary without the password a Redis URL may carry.
func TestCheckConfig(t *testing.T) {
	cfg := daemon.Defaults()
	cfg.Admin.Token = "0123456789abcdef-token"
	cfg.Redis.Addr = "redis://:hunter2@redis.internal:6379/0"
	cfg.Secrets.KeyFile = filepath.Join(t.TempDir(), "missing")
	if code := check(cfg, "f.yaml", false); code != 2 {
		t.Errorf("a missing key file: exit %d, want 2", code)
	}
	cfg.Secrets.KeyFile = ""
	cfg.Secrets.Keys = []string{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if code := check(cfg, "f.yaml", false); code != 2 {
		t.Errorf("tracing over grpc, which start-up refuses: exit %d, want 2", code)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	code := check(cfg, "f.yaml", false)
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if code != 0 || !strings.Contains(string(out), "configuration is valid") || strings.Contains(string(out), "hunter2") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}

// Kafka credentials come from the file or the environment like every key.
func TestKafkaSecurityFromEnvironment(t *testing.T) {
	t.Setenv("FEEDBACKD_KAFKA_TLS_ENABLED", "true")
	t.Setenv("FEEDBACKD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("FEEDBACKD_KAFKA_SASL_USERNAME", "feedbackd")
	t.Setenv("FEEDBACKD_KAFKA_SASL_PASSWORD", "from-the-environment")
	cfg, _, _, err := loadConfig(flagSet(), "../../config/feedbackd.yaml", false)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Kafka
	if !k.TLS.Enabled || k.SASL.Mechanism != "SCRAM-SHA-512" || k.SASL.Username != "feedbackd" || k.SASL.Password != "from-the-environment" {
		t.Fatalf("got %+v %+v", k.TLS, k.SASL.LogValue())
	}
}
