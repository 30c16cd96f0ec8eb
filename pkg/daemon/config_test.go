package daemon

import (
	"strings"
	"testing"
	"time"
)

func valid() Config {
	c := Defaults()
	c.Admin.Token = "0123456789abcdef"
	c.Secrets.Keys = []string{"a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="}
	return c
}

func TestDefaultsNeedOnlyAToken(t *testing.T) {
	c := Defaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Fatalf("defaults without a token: %v", err)
	}
	c = valid()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"kafka.brokers", func(c *Config) { c.Kafka.Brokers = nil }},
		{"kafka.brokers", func(c *Config) { c.Kafka.Brokers = []string{"nohostport"} }},
		{"kafka.group", func(c *Config) { c.Kafka.Group = "" }},
		{"kafka.topics.input", func(c *Config) { c.Kafka.Topics.Input = []string{"feedback.dlq"} }},
		{"kafka.partitions", func(c *Config) { c.Kafka.Partitions = 0 }},
		{"kafka.session_timeout", func(c *Config) { c.Kafka.SessionTimeout = 0 }},
		{"delivery_log.per_config", func(c *Config) { c.DeliveryLog.Enabled, c.DeliveryLog.PerConfig = true, -1 }},
		{"delivery_log.per_config", func(c *Config) { c.DeliveryLog.Enabled, c.DeliveryLog.PerConfig = true, 0 }},
		{"delivery_log.max_age", func(c *Config) { c.DeliveryLog.Enabled, c.DeliveryLog.MaxAge = true, -time.Hour }},
		{"delivery_log.max_age", func(c *Config) { c.DeliveryLog.Enabled, c.DeliveryLog.MaxAge = true, time.Second }},
		{"redis.addr", func(c *Config) { c.Redis.Addr = "localhost" }},
		{"redis.addr", func(c *Config) { c.Redis.Addr = "redis://:bad:port:/x" }},
		{"http.addr", func(c *Config) { c.HTTP.Addr = "8080" }},
		{"admin.token", func(c *Config) { c.Admin.Token = "short" }},
		{"admin.token", func(c *Config) { c.Admin.Token = "" }},
		{"secrets", func(c *Config) { c.Secrets.Keys = nil }},
		{"admin.jwt.hmac_secret", func(c *Config) { c.Admin.JWT.HMACSecret = "short" }},
		{"delivery.allowed_cidrs", func(c *Config) { c.Delivery.AllowedCIDRs = []string{"10.0.0.1"} }},
		{"retry.schedule", func(c *Config) { c.Retry.Schedule = nil }},
		{"retry.schedule", func(c *Config) { c.Retry.Jitter = 2 }},
		{"delivery.timeout", func(c *Config) { c.Delivery.Timeout = time.Hour }},
		{"delivery.concurrency", func(c *Config) { c.Delivery.Concurrency = 0 }},
		{"delivery.disable_after", func(c *Config) { c.Delivery.DisableAfter = -time.Hour }},
		{"delivery.disable_after", func(c *Config) { c.Delivery.DisableAfter = time.Millisecond }},
		{"shutdown.timeout", func(c *Config) { c.Shutdown.Timeout = 0 }},
		{"log.level", func(c *Config) { c.Log.Level = "loud" }},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
}
