package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/retry"
)

// Config is feedbackd's configuration, decoded from config/feedbackd.yaml,
// FEEDBACKD_* variables and flags (see cmd/feedbackd). The mapstructure tags
// are the configuration keys.
type Config struct {
	Kafka    KafkaConfig    `mapstructure:"kafka"`
	Redis    RedisConfig    `mapstructure:"redis"`
	HTTP     HTTPConfig     `mapstructure:"http"`
	Admin    AdminConfig    `mapstructure:"admin"`
	Retry    RetryConfig    `mapstructure:"retry"`
	Delivery DeliveryConfig `mapstructure:"delivery"`
	Outcomes OutcomesConfig `mapstructure:"outcomes"`
	// DeliveryLog is fed even when outcomes are off.
	DeliveryLog DeliveryLogConfig `mapstructure:"delivery_log"`
	Configs     ConfigsConfig     `mapstructure:"configs"`
	Secrets     SecretsConfig     `mapstructure:"secrets"`
	Shutdown    ShutdownConfig    `mapstructure:"shutdown"`
	Log         LogConfig         `mapstructure:"log"`
}

// KafkaConfig says where the topics are.
type KafkaConfig struct {
	Brokers      []string      `mapstructure:"brokers"`
	Group        string        `mapstructure:"group"`
	ClientID     string        `mapstructure:"client_id"`
	Topics       TopicsConfig  `mapstructure:"topics"`
	CreateTopics bool          `mapstructure:"create_topics"`
	Partitions   int32         `mapstructure:"partitions"`
	LagInterval  time.Duration `mapstructure:"lag_interval"`
	// SessionTimeout is how long the group waits for a member that stopped
	// answering (crashed) before its partitions move to the others.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	// TLS and SASL secure the connections of every Kafka client.
	TLS  kafkaconn.TLS  `mapstructure:"tls"`
	SASL kafkaconn.SASL `mapstructure:"sasl"`
}

// Conn is how the Kafka clients connect: brokers, TLS and SASL.
func (k KafkaConfig) Conn() *kafkaconn.Config {
	return &kafkaconn.Config{Brokers: k.Brokers, TLS: k.TLS, SASL: k.SASL}
}

// TopicsConfig names the topics.
type TopicsConfig struct {
	Input       []string `mapstructure:"input"`
	RetryPrefix string   `mapstructure:"retry_prefix"`
	DLQ         string   `mapstructure:"dlq"`
	Configs     string   `mapstructure:"configs"`
	Outcomes    string   `mapstructure:"outcomes"`
}

// OutcomesConfig is the outcomes topic: a record per attempt and per
// outcome (package outcome).
type OutcomesConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// ResponseBytes of each answer's body are kept in attempt records; 0
	// keeps none.
	ResponseBytes int `mapstructure:"response_bytes"`
}

// DeliveryLogConfig is the delivery log in Redis (package deliverylog):
// the recent outcome records of each config, for the admin API.
type DeliveryLogConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// PerConfig records are kept per config (about: trimming is by whole
	// stream nodes); MaxAge bounds their age.
	PerConfig int           `mapstructure:"per_config"`
	MaxAge    time.Duration `mapstructure:"max_age"`
}

// OutcomesTopic is the outcomes topic's name, "" when it is off.
func (c *Config) OutcomesTopic() string {
	if !c.Outcomes.Enabled {
		return ""
	}
	return c.Kafka.Topics.Outcomes
}

// RedisConfig says where Redis is and how to reach it: one server
// (redis.addr, or one of redis.addrs), a Cluster (several redis.addrs, or
// mode cluster) or the masters that Sentinels name (redis.master_name). See
// redis.go.
type RedisConfig struct {
	Addr         string         `mapstructure:"addr"`
	Addrs        []string       `mapstructure:"addrs"`
	Mode         string         `mapstructure:"mode"` // "" (from the other keys), standalone, cluster, sentinel
	MasterName   string         `mapstructure:"master_name"`
	Username     string         `mapstructure:"username"`
	Password     string         `mapstructure:"password"`
	PasswordFile string         `mapstructure:"password_file"`
	DB           int            `mapstructure:"db"`
	TLS          RedisTLSConfig `mapstructure:"tls"`
	KeyPrefix    string         `mapstructure:"key_prefix"`
	// PoolSize is the most connections feedbackd opens to each Redis
	// server; 0 sizes it from the most delivery slots (Config.RedisPoolSize).
	PoolSize int `mapstructure:"pool_size"`
}

// RedisTLSConfig is TLS to Redis (and to the Sentinels).
type RedisTLSConfig struct {
	Enabled    bool   `mapstructure:"enabled"`
	CAFile     string `mapstructure:"ca_file"`
	CertFile   string `mapstructure:"cert_file"`
	KeyFile    string `mapstructure:"key_file"`
	ServerName string `mapstructure:"server_name"`
}

// HTTPConfig is the admin, health and metrics listener.
type HTTPConfig struct {
	Addr string `mapstructure:"addr"`
	// UI serves the web console at /ui/ on this listener; false: no /ui/
	// routes at all.
	UI bool `mapstructure:"ui"`
	// UIPlainHTTP drops the Secure attribute of the console's session
	// cookie, for a console reached over plain HTTP (development).
	UIPlainHTTP bool `mapstructure:"ui_plain_http"`
}

// AdminConfig protects the admin API: a static token, JWTs, or both.
type AdminConfig struct {
	Token string         `mapstructure:"token"`
	JWT   AdminJWTConfig `mapstructure:"jwt"`
}

// AdminJWTConfig says which JWTs the admin API trusts.
type AdminJWTConfig struct {
	HMACSecret     string `mapstructure:"hmac_secret"`
	HMACSecretFile string `mapstructure:"hmac_secret_file"`
	PublicKeyFile  string `mapstructure:"public_key_file"`
	JWKSFile       string `mapstructure:"jwks_file"`
	Issuer         string `mapstructure:"issuer"`
	Audience       string `mapstructure:"audience"`
}

func (j AdminJWTConfig) enabled() bool {
	return j.HMACSecret != "" || j.HMACSecretFile != "" || j.PublicKeyFile != "" || j.JWKSFile != ""
}

// SecretsConfig holds the keys that encrypt secrets at rest.
type SecretsConfig struct {
	KeyFile       string        `mapstructure:"key_file"`
	Keys          []string      `mapstructure:"keys"`
	RotationGrace time.Duration `mapstructure:"rotation_grace"`
}

// RetryConfig is the retry schedule.
type RetryConfig struct {
	Schedule []time.Duration `mapstructure:"schedule"`
	Jitter   float64         `mapstructure:"jitter"`
}

// DeliveryConfig shapes HTTP attempts.
type DeliveryConfig struct {
	Timeout     time.Duration `mapstructure:"timeout"`
	Concurrency int           `mapstructure:"concurrency"`
	// MaxInflight is as many slots as Concurrency may grow to while all
	// are taken by deliveries waiting for slow endpoints and cores are to
	// spare (never fewer than Concurrency): the memory bound.
	MaxInflight          int      `mapstructure:"max_inflight"`
	MaxResponseBytes     int64    `mapstructure:"max_response_bytes"`
	AllowPrivateNetworks bool     `mapstructure:"allow_private_networks"`
	AllowedCIDRs         []string `mapstructure:"allowed_cidrs"`
	AllowHTTP            bool     `mapstructure:"allow_http"`
	// EndpointConcurrency caps the attempts in flight to one endpoint URL,
	// all instances together, so that a slow endpoint holds at most that
	// many of the delivery slots.
	EndpointConcurrency int `mapstructure:"endpoint_concurrency"`
	// MaxParked caps the events that wait, without a slot, for a busy
	// endpoint; beyond it they are deferred to a retry tier.
	MaxParked int           `mapstructure:"max_parked"`
	Breaker   BreakerConfig `mapstructure:"breaker"`
	// DedupeWindow is how long a delivered webhook-id is remembered in
	// Redis so that a record read again is not sent again; 0 turns
	// duplicate suppression off.
	DedupeWindow time.Duration `mapstructure:"dedupe_window"`
	// DisableAfter disables a config whose deliveries fail with no success
	// for this long (package failclock); 0 never does.
	DisableAfter time.Duration `mapstructure:"disable_after"`
	// Proxy is the egress proxy of deliveries and OAuth2 token requests,
	// http://[user:pass@]host:port; "" connects directly. It may hold a
	// password: log ProxyAddr, never this.
	Proxy string `mapstructure:"proxy"`
}

// ProxyURL is delivery.proxy parsed, nil when unset. Call it on a
// validated configuration.
func (d DeliveryConfig) ProxyURL() *url.URL {
	if d.Proxy == "" {
		return nil
	}
	u, _ := deliver.ParseProxy(d.Proxy)
	return u
}

// BreakerConfig shapes the per-endpoint circuit breakers.
type BreakerConfig struct {
	Threshold   int           `mapstructure:"threshold"`    // failures with no success in between that open it
	Cooldown    time.Duration `mapstructure:"cooldown"`     // first open period; doubles after each failed probe
	MaxCooldown time.Duration `mapstructure:"max_cooldown"` // longest open period
}

// ConfigsConfig tunes the webhook config cache.
type ConfigsConfig struct {
	CacheTTL      time.Duration `mapstructure:"cache_ttl"`
	CacheSize     int           `mapstructure:"cache_size"`
	CheckInterval time.Duration `mapstructure:"check_interval"`
}

// ShutdownConfig bounds the drain on SIGTERM.
type ShutdownConfig struct {
	Timeout time.Duration `mapstructure:"timeout"`
}

// LogConfig shapes logs.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Defaults returns the configuration feedbackd runs with when nothing is
// set. admin.token has no default: it must be chosen.
func Defaults() Config {
	return Config{
		Kafka: KafkaConfig{
			Brokers:  []string{"127.0.0.1:9092"},
			Group:    "feedbackd",
			ClientID: "feedbackd",
			Topics: TopicsConfig{
				Input:       []string{"feedback.sent", "feedback.delivered", "feedback.bounce", "feedback.error"},
				RetryPrefix: "feedback.retry",
				DLQ:         "feedback.dlq",
				Configs:     "feedback.configs",
				Outcomes:    "feedback.outcomes",
			},
			CreateTopics:   true,
			Partitions:     6,
			LagInterval:    15 * time.Second,
			SessionTimeout: 45 * time.Second,
		},
		Redis: RedisConfig{Addr: "127.0.0.1:6379", Addrs: []string{}, KeyPrefix: "feedbackd:"},
		HTTP:  HTTPConfig{Addr: ":8080", UI: true},
		Retry: RetryConfig{
			Schedule: []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
				30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour},
			Jitter: 0.1,
		},
		Delivery: DeliveryConfig{
			Timeout: 15 * time.Second, Concurrency: 256, MaxInflight: 4096, MaxResponseBytes: 64 << 10, AllowedCIDRs: []string{},
			EndpointConcurrency: 64, MaxParked: 256,
			Breaker:      BreakerConfig{Threshold: 5, Cooldown: 10 * time.Second, MaxCooldown: 5 * time.Minute},
			DedupeWindow: 10 * time.Minute,
			DisableAfter: 5 * 24 * time.Hour,
		},
		Outcomes:    OutcomesConfig{ResponseBytes: 1024},
		DeliveryLog: DeliveryLogConfig{Enabled: false, PerConfig: 1000, MaxAge: 72 * time.Hour},
		Configs:     ConfigsConfig{CacheTTL: 30 * time.Second, CacheSize: 100_000, CheckInterval: 5 * time.Second},
		Secrets:     SecretsConfig{Keys: []string{}, RotationGrace: 24 * time.Hour},
		Shutdown:    ShutdownConfig{Timeout: 30 * time.Second},
		Log:         LogConfig{Level: "info", Format: "json"},
	}
}

// Validate checks the configuration; its error names the key at fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) { errs = append(errs, fmt.Errorf(key+": "+format, a...)) }

	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for _, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("kafka.brokers", "%q is not host:port", b)
		}
	}
	if err := c.Kafka.Conn().Validate(kafkaconn.DaemonKeys); err != nil {
		errs = append(errs, err)
	}
	if c.Kafka.Group == "" {
		bad("kafka.group", "is required")
	}
	if len(c.Kafka.Topics.Input) == 0 {
		bad("kafka.topics.input", "at least one input topic is required")
	}
	for key, v := range map[string]string{"kafka.topics.retry_prefix": c.Kafka.Topics.RetryPrefix, "kafka.topics.dlq": c.Kafka.Topics.DLQ, "kafka.topics.configs": c.Kafka.Topics.Configs} {
		if v == "" {
			bad(key, "is required")
		}
	}
	for _, t := range c.Kafka.Topics.Input {
		if t == c.Kafka.Topics.DLQ || t == c.Kafka.Topics.Configs || t == c.Kafka.Topics.Outcomes || strings.HasPrefix(t, c.Kafka.Topics.RetryPrefix+".") {
			bad("kafka.topics.input", "%q is also the dead-letter, configs, outcomes or a retry topic", t)
		}
	}
	if c.Outcomes.Enabled {
		switch o := c.Kafka.Topics.Outcomes; {
		case o == "":
			bad("kafka.topics.outcomes", "is required while outcomes.enabled is true")
		case o == c.Kafka.Topics.DLQ || o == c.Kafka.Topics.Configs || strings.HasPrefix(o, c.Kafka.Topics.RetryPrefix+"."):
			bad("kafka.topics.outcomes", "%q is also the dead-letter, configs or a retry topic", o)
		}
	}
	if c.Outcomes.ResponseBytes < 0 || c.Outcomes.ResponseBytes > 64<<10 {
		bad("outcomes.response_bytes", "%d is outside 0..65536", c.Outcomes.ResponseBytes)
	}
	if c.DeliveryLog.Enabled {
		if c.DeliveryLog.PerConfig < 1 || c.DeliveryLog.PerConfig > 100_000 {
			bad("delivery_log.per_config", "%d is outside 1..100000", c.DeliveryLog.PerConfig)
		}
		if c.DeliveryLog.MaxAge < time.Minute || c.DeliveryLog.MaxAge > 90*24*time.Hour {
			bad("delivery_log.max_age", "%s is outside 1m..2160h (90 days)", c.DeliveryLog.MaxAge)
		}
	}
	if c.Kafka.Partitions < 1 {
		bad("kafka.partitions", "must be at least 1")
	}
	if c.Kafka.SessionTimeout < time.Second || c.Kafka.SessionTimeout > 30*time.Minute {
		bad("kafka.session_timeout", "%s is outside 1s..30m (brokers also bound it: group.min/max.session.timeout.ms)", c.Kafka.SessionTimeout)
	}
	if c.Kafka.LagInterval < 100*time.Millisecond {
		bad("kafka.lag_interval", "must be at least 100ms")
	}
	c.Redis.validate(bad)
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr", "%q is not [host]:port", c.HTTP.Addr)
	}
	switch {
	case c.Admin.Token == "" && !c.Admin.JWT.enabled():
		bad("admin.token", "is required (set FEEDBACKD_ADMIN_TOKEN), unless admin.jwt is configured; it protects the admin API")
	case c.Admin.Token != "" && len(c.Admin.Token) < 16:
		bad("admin.token", "must be at least 16 characters")
	}
	if c.Admin.JWT.HMACSecret != "" && len(c.Admin.JWT.HMACSecret) < 32 {
		bad("admin.jwt.hmac_secret", "must be at least 32 characters")
	}
	if c.Secrets.KeyFile == "" && len(c.Secrets.Keys) == 0 {
		bad("secrets", "no encryption key for secrets at rest: set secrets.key_file or FEEDBACKD_SECRETS_KEYS (a base64 32-byte key: openssl rand -base64 32)")
	}
	if c.Secrets.RotationGrace < time.Second {
		bad("secrets.rotation_grace", "must be at least 1s")
	}
	if err := c.RetryPolicy().Validate(); err != nil {
		bad("retry.schedule", "%v", err)
	}
	if c.Delivery.Timeout < 100*time.Millisecond || c.Delivery.Timeout > 5*time.Minute {
		bad("delivery.timeout", "%s is outside 100ms..5m", c.Delivery.Timeout)
	}
	if c.Delivery.Concurrency < 1 || c.Delivery.Concurrency > 100_000 {
		bad("delivery.concurrency", "%d is outside 1..100000", c.Delivery.Concurrency)
	}
	if c.Delivery.MaxInflight < 0 || c.Delivery.MaxInflight > 100_000 {
		bad("delivery.max_inflight", "%d is outside 0..100000", c.Delivery.MaxInflight)
	}
	if c.Delivery.EndpointConcurrency < 1 || c.Delivery.EndpointConcurrency > 100_000 {
		bad("delivery.endpoint_concurrency", "%d is outside 1..100000", c.Delivery.EndpointConcurrency)
	}
	if c.Delivery.MaxParked < 1 || c.Delivery.MaxParked > 1_000_000 {
		bad("delivery.max_parked", "%d is outside 1..1000000", c.Delivery.MaxParked)
	}
	if b := c.Delivery.Breaker; b.Threshold < 1 {
		bad("delivery.breaker.threshold", "must be at least 1")
	}
	if b := c.Delivery.Breaker; b.Cooldown < time.Second || b.MaxCooldown < b.Cooldown {
		bad("delivery.breaker.cooldown", "must be at least 1s and at most delivery.breaker.max_cooldown (%s)", b.MaxCooldown)
	}
	if w := c.Delivery.DedupeWindow; w != 0 && (w < time.Second || w > 7*24*time.Hour) {
		bad("delivery.dedupe_window", "%s is outside 1s..168h (0 turns duplicate suppression off)", w)
	}
	for _, cidr := range c.Delivery.AllowedCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			bad("delivery.allowed_cidrs", "%q is not a CIDR (10.20.0.0/16, fd00:1::/64)", cidr)
		}
	}
	if a := c.Delivery.DisableAfter; a != 0 && a < time.Second {
		bad("delivery.disable_after", "%s is below 1s (0 never disables a config)", a)
	}
	if c.Delivery.MaxResponseBytes < 0 {
		bad("delivery.max_response_bytes", "must not be negative")
	}
	if c.Delivery.Proxy != "" {
		if _, err := deliver.ParseProxy(c.Delivery.Proxy); err != nil {
			bad("delivery.proxy", "%v", err) // ParseProxy never quotes the password
		}
	}
	if c.Configs.CacheTTL < 0 || c.Configs.CacheSize < 1 || c.Configs.CheckInterval < 10*time.Millisecond {
		bad("configs", "cache_ttl must be >= 0, cache_size >= 1, check_interval >= 10ms")
	}
	if c.Shutdown.Timeout < time.Second {
		bad("shutdown.timeout", "must be at least 1s")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "%q is not json or text", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Guard is the network guard of deliveries and endpoint URLs, resolving
// names with r (nil: the system resolver). Call it on a validated
// configuration.
func (c *Config) Guard(r netguard.Resolver) *netguard.Guard {
	g := &netguard.Guard{AllowPrivate: c.Delivery.AllowPrivateNetworks, Resolver: r}
	for _, cidr := range c.Delivery.AllowedCIDRs {
		if p, err := netip.ParsePrefix(cidr); err == nil {
			g.Allow = append(g.Allow, p.Masked())
		}
	}
	return g
}

// RetryPolicy is the configured retry schedule as a value.
func (c *Config) RetryPolicy() retry.Policy {
	return retry.Policy{Schedule: c.Retry.Schedule, Jitter: c.Retry.Jitter}
}
