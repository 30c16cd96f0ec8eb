package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisModes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RedisConfig)
		want   any // the client type
		mode   string
	}{
		{"host:port", func(r *RedisConfig) {}, &redis.Client{}, RedisStandalone},
		{"URL with user, password and db", func(r *RedisConfig) { r.Addr = "redis://user:pw@10.0.0.1:6380/2" }, &redis.Client{}, RedisStandalone},
		{"rediss URL", func(r *RedisConfig) { r.Addr = "rediss://h:6379" }, &redis.Client{}, RedisStandalone},
		{"unix socket", func(r *RedisConfig) { r.Addr = "unix:///tmp/redis.sock" }, &redis.Client{}, RedisStandalone},
		{"one of addrs", func(r *RedisConfig) { r.Addrs = []string{"h:1"} }, &redis.Client{}, RedisStandalone},
		{"several addrs: cluster", func(r *RedisConfig) { r.Addrs = []string{"h:1", "h:2"} }, &redis.ClusterClient{}, RedisCluster},
		{"one cluster seed", func(r *RedisConfig) { r.Addrs = []string{"h:1"}; r.Mode = RedisCluster }, &redis.ClusterClient{}, RedisCluster},
		{"sentinel with one addr", func(r *RedisConfig) { r.Addrs = []string{"h:26379"}; r.MasterName = "mymaster" }, &redis.Client{}, RedisSentinel},
		{"sentinels", func(r *RedisConfig) { r.Addrs = []string{"h:1", "h:2", "h:3"}; r.MasterName = "m"; r.DB = 3 }, &redis.Client{}, RedisSentinel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c.Redis)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if m := c.Redis.ModeName(); m != tt.mode {
				t.Errorf("mode %s, want %s", m, tt.mode)
			}
			rdb, err := c.Redis.NewRedisClient()
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			if got, want := fmt.Sprintf("%T", rdb), fmt.Sprintf("%T", tt.want); got != want {
				t.Errorf("client %s, want %s", got, want)
			}
		})
	}
}

func TestRedisValidateNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret-from-file\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		key    string
		mutate func(*RedisConfig)
	}{
		{"redis.addr", func(r *RedisConfig) { r.Addr = "localhost" }},
		{"redis.addr", func(r *RedisConfig) { r.Addr = "" }},
		{"redis.addr", func(r *RedisConfig) { r.Addr = "redis://:bad:port:/x" }},
		{"redis.addr", func(r *RedisConfig) { r.Addr = "redis://u:pw@h:1"; r.Addrs = []string{"h:1", "h:2"} }},
		{"redis.addrs", func(r *RedisConfig) { r.Addrs = []string{"h:1", "nohostport"} }},
		{"redis.addrs", func(r *RedisConfig) { r.Addrs = []string{"h:1", "h:2"}; r.Mode = RedisStandalone }},
		{"redis.mode", func(r *RedisConfig) { r.Mode = "replicated" }},
		{"redis.db", func(r *RedisConfig) { r.Addrs = []string{"h:1", "h:2"}; r.DB = 1 }},
		{"redis.db", func(r *RedisConfig) { r.DB = -1 }},
		{"redis.db", func(r *RedisConfig) { r.Addr = "redis://h:1/2"; r.DB = 3 }},
		{"redis.master_name", func(r *RedisConfig) { r.Mode = RedisSentinel; r.Addrs = []string{"h:26379"} }},
		{"redis.master_name", func(r *RedisConfig) { r.Mode = RedisCluster; r.MasterName = "m"; r.Addrs = []string{"h:1"} }},
		{"redis.password", func(r *RedisConfig) { r.Password = "a"; r.PasswordFile = pwFile }},
		{"redis.password", func(r *RedisConfig) { r.Addr = "redis://:pw@h:1"; r.Password = "b" }},
		{"redis.username", func(r *RedisConfig) { r.Addr = "redis://u:pw@h:1"; r.Username = "v" }},
		{"redis.password_file", func(r *RedisConfig) { r.PasswordFile = filepath.Join(dir, "missing") }},
		{"redis.key_prefix", func(r *RedisConfig) { r.KeyPrefix = "{fb}:" }},
		{"redis.tls.enabled", func(r *RedisConfig) { r.TLS.CAFile = notPEM }},
		{"redis.tls.key_file", func(r *RedisConfig) { r.TLS.Enabled = true; r.TLS.CertFile = notPEM }},
		{"redis.tls.cert_file", func(r *RedisConfig) { r.TLS.Enabled = true; r.TLS.KeyFile = notPEM }},
		{"redis.tls", func(r *RedisConfig) { r.TLS.Enabled = true; r.TLS.CAFile = notPEM }},
		{"redis.tls", func(r *RedisConfig) { r.TLS.Enabled = true; r.TLS.CAFile = filepath.Join(dir, "missing") }},
		{"redis.tls", func(r *RedisConfig) { r.TLS.Enabled = true; r.TLS.CertFile = notPEM; r.TLS.KeyFile = notPEM }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := valid()
			tt.mutate(&c.Redis)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
			if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error holds a password: %v", err)
			}
		})
	}
}

func TestRedisPasswordFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("from-file\r\nignored\n"), 0o600)
	r := RedisConfig{Addr: "h:1", PasswordFile: f}
	if pw, err := r.password(); err != nil || pw != "from-file" {
		t.Fatalf("password() = %q, %v", pw, err)
	}
}

func TestRedisErrorHoldsNoSecret(t *testing.T) {
	r := RedisConfig{Addr: "redis://feedbackd:hunter2hunter2@127.0.0.1:1"}
	tests := []struct {
		err  error
		want string
	}{
		{redis.ErrClosed, "redis: redis: client is closed (standalone 127.0.0.1:1)"},
		{errors.New("WRONGPASS invalid username-password pair or user is disabled."), "redis: authentication failed (user feedbackd)"},
		{errors.New("NOPERM User feedbackd has no permissions to run the 'flushall' command"), "redis: permission denied for user feedbackd (ACL: User feedbackd has no permissions to run the 'flushall' command)"},
		{context.DeadlineExceeded, "redis: unreachable (standalone 127.0.0.1:1): timed out"},
		{errors.New("weird hunter2hunter2"), "redis: weird *** (standalone 127.0.0.1:1)"},
	}
	for _, tt := range tests {
		if got := r.RedisError(tt.err).Error(); got != tt.want {
			t.Errorf("RedisError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
