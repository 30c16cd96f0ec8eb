package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis modes (redis.mode). The empty mode is chosen from the other keys:
// redis.master_name means Sentinel, several redis.addrs a Cluster, else one
// server.
const (
	RedisStandalone = "standalone"
	RedisCluster    = "cluster"
	RedisSentinel   = "sentinel"
)

// ModeName is the Redis mode the configuration asks for.
func (r RedisConfig) ModeName() string {
	switch {
	case r.Mode != "":
		return r.Mode
	case r.MasterName != "":
		return RedisSentinel
	case len(r.Addrs) > 1:
		return RedisCluster
	}
	return RedisStandalone
}

func (r RedisConfig) tlsOn() bool {
	return r.TLS.Enabled || r.isURL() && strings.HasPrefix(r.Addr, "rediss://")
}

func (r RedisConfig) isURL() bool { return len(r.Addrs) == 0 && strings.Contains(r.Addr, "://") }

// maxRedisPool bounds redis.pool_size: Redis runs commands on one thread,
// so connections beyond a few hundred add memory, not throughput.
const maxRedisPool = 10_000

// RedisPoolSize is the number of connections feedbackd opens to each Redis
// server: redis.pool_size, or, when it is 0, max(10 x GOMAXPROCS,
// min(slots / 32, 256)), where slots is the most delivery slots
// (delivery.max_inflight, or delivery.concurrency if higher): never fewer
// than go-redis's default.
//
// Why: every part shares the pool. Config lookups that miss the local
// cache are read in batches (at most 4 round trips at once); dedupe
// records, the delivery log and the failure clock are written in batches
// by one goroutine each. What comes per delivery is a circuit-breaker
// script for each failed attempt, and a dedupe check for each record read
// again after a crash or rebalance: an egress outage or a rebalance makes
// every slot do one at once. With concurrency/32 connections such a burst
// drains in 32 round trips (well under a second even at 10 ms each,
// against go-redis's PoolTimeout of 4 s). Beyond 256, Redis (one thread)
// gains nothing and each connection costs 64 KiB of buffers here.
func (c *Config) RedisPoolSize() int {
	if c.Redis.PoolSize > 0 {
		return c.Redis.PoolSize
	}
	return autoPoolSize(runtime.GOMAXPROCS(0), max(c.Delivery.Concurrency, c.Delivery.MaxInflight))
}

func autoPoolSize(procs, concurrency int) int {
	return max(10*procs, min(concurrency/32, 256))
}

// validate reports what is wrong with r to bad, naming the key. It reads
// the password and TLS files, so that a wrong path is refused before start.
func (r *RedisConfig) validate(bad func(key, format string, a ...any)) {
	switch r.Mode {
	case "", RedisStandalone, RedisCluster, RedisSentinel:
	default:
		bad("redis.mode", "%q is not standalone, cluster or sentinel (or empty: chosen from redis.addrs and redis.master_name)", r.Mode)
		return
	}
	mode := r.ModeName()
	var fromURL *redis.Options
	switch {
	case len(r.Addrs) > 0:
		if strings.Contains(r.Addr, "://") {
			bad("redis.addr", "a URL cannot be combined with redis.addrs: give the addresses in redis.addrs and the rest in redis.username, redis.password, redis.db and redis.tls")
		}
		for i, a := range r.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil || strings.Contains(a, "@") {
				// Not quoted: a URL with a password may have been given here.
				bad("redis.addrs", "entry %d is not host:port (credentials go in redis.username and redis.password_file)", i+1)
			}
		}
	case r.Addr == "":
		bad("redis.addr", "is required (or redis.addrs)")
	case strings.Contains(r.Addr, "://"):
		o, err := redis.ParseURL(r.Addr)
		if err != nil {
			bad("redis.addr", "not a valid Redis URL (redis://[user:password@]host:port[/db], rediss://, unix://)")
			break
		}
		fromURL = o
		if mode != RedisStandalone {
			bad("redis.addr", "a URL is for one server; for %s give redis.addrs", mode)
		}
	default:
		if _, _, err := net.SplitHostPort(r.Addr); err != nil || strings.Contains(r.Addr, "@") {
			bad("redis.addr", "is not host:port or a redis:// URL (not quoted: it may hold a password)")
		}
	}
	switch {
	case mode == RedisSentinel && r.MasterName == "":
		bad("redis.master_name", "is required with Sentinel (redis.mode sentinel): the name the Sentinels monitor")
	case mode != RedisSentinel && r.MasterName != "":
		bad("redis.master_name", "is only for Sentinel, not redis.mode %s", mode)
	case mode == RedisStandalone && len(r.Addrs) > 1:
		bad("redis.addrs", "redis.mode standalone takes one address; several are a Cluster or Sentinels")
	}
	if r.DB < 0 {
		bad("redis.db", "must not be negative")
	}
	if mode == RedisCluster && r.DB != 0 {
		bad("redis.db", "must be 0 with Redis Cluster (a Cluster has only database 0)")
	}
	if r.Password != "" && r.PasswordFile != "" {
		bad("redis.password", "and redis.password_file are both set: choose one")
	}
	if fromURL != nil {
		if fromURL.Password != "" && (r.Password != "" || r.PasswordFile != "") {
			bad("redis.password", "is set and redis.addr's URL holds a password too: choose one")
		}
		if fromURL.Username != "" && r.Username != "" {
			bad("redis.username", "is set and redis.addr's URL holds a user too: choose one")
		}
		if fromURL.DB != 0 && r.DB != 0 {
			bad("redis.db", "is set and redis.addr's URL names a database too: choose one")
		}
	}
	if r.PoolSize < 0 || r.PoolSize > maxRedisPool {
		bad("redis.pool_size", "%d is outside 0..%d (0 sizes the pool from the delivery slots)", r.PoolSize, maxRedisPool)
	}
	if strings.ContainsAny(r.KeyPrefix, "{}") {
		bad("redis.key_prefix", "must not contain { or }: feedbackd places its own Cluster hash tags")
	}
	if _, err := r.password(); err != nil {
		bad("redis.password_file", "%v", err)
	}
	t := r.TLS
	tlsOn := t.Enabled || (fromURL != nil && fromURL.TLSConfig != nil)
	switch {
	case !tlsOn && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""):
		bad("redis.tls.enabled", "is false but other redis.tls keys are set (use rediss:// or redis.tls.enabled: true)")
	case t.CertFile != "" && t.KeyFile == "":
		bad("redis.tls.key_file", "is required with redis.tls.cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		bad("redis.tls.cert_file", "is required with redis.tls.key_file")
	default:
		if _, err := r.tlsConfig(nil); err != nil {
			bad("redis.tls", "%v", err)
		}
	}
}

// password is redis.password, or the first line of redis.password_file.
func (r RedisConfig) password() (string, error) {
	if r.PasswordFile == "" {
		return r.Password, nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", r.PasswordFile, errors.Unwrap(err))
	}
	p, _, _ := strings.Cut(string(b), "\n")
	p = strings.TrimRight(p, "\r")
	if p == "" {
		return "", fmt.Errorf("%s is empty", r.PasswordFile)
	}
	return p, nil
}

// tlsConfig is the TLS configuration for Redis, nil without TLS. base is
// a rediss:// URL's (server name from the URL), or nil.
func (r RedisConfig) tlsConfig(base *tls.Config) (*tls.Config, error) {
	t := r.TLS
	if !t.Enabled && base == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		c = base.Clone()
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: cannot read %s: %w", t.CAFile, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file, key_file: %v", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// NewRedisClient returns the Redis client a validated configuration asks
// for: a *redis.Client, *redis.ClusterClient or Sentinel-backed failover
// client, with PoolSize connections per server (0: go-redis's default,
// 10 per GOMAXPROCS; Config.RedisPoolSize is the automatic size). It does
// not connect; the caller closes it.
func (r RedisConfig) NewRedisClient() (redis.UniversalClient, error) {
	return r.newClient(tuning{poolSize: r.PoolSize})
}

// NewRedisCheckClient returns a client like NewRedisClient's but with one
// connection per server, for health checks: they never wait behind the
// commands of a busy pool. Its commands end at the context's deadline
// (go-redis ignores deadlines unless told) and are not retried, so one
// check is one attempt of at most the caller's timeout.
func (r RedisConfig) NewRedisCheckClient() (redis.UniversalClient, error) {
	return r.newClient(tuning{poolSize: 1, check: true})
}

// tuning is what differs between the clients of one configuration.
type tuning struct {
	poolSize int // per server; 0: go-redis's default
	check    bool
}

func (r RedisConfig) newClient(t tuning) (redis.UniversalClient, error) {
	pw, err := r.password()
	if err != nil {
		return nil, fmt.Errorf("redis.password_file: %w", err)
	}
	if r.isURL() {
		o, err := redis.ParseURL(r.Addr)
		if err != nil {
			return nil, errors.New("redis.addr: not a valid Redis URL")
		}
		if pw != "" {
			o.Password = pw
		}
		if r.Username != "" {
			o.Username = r.Username
		}
		if r.DB != 0 {
			o.DB = r.DB
		}
		if o.TLSConfig, err = r.tlsConfig(o.TLSConfig); err != nil {
			return nil, fmt.Errorf("redis.tls: %w", err)
		}
		if t.poolSize > 0 {
			o.PoolSize = t.poolSize
		}
		if t.check {
			o.ContextTimeoutEnabled, o.MaxRetries, o.PipelinePoolSize = true, -1, -1
		}
		return redis.NewClient(o), nil
	}
	// A copy per client: go-redis appends the nodes it learns to its
	// options' Addrs, and two clients sharing one backing array (the main
	// one and the health check's) raced on it.
	addrs := slices.Clone(r.Addrs)
	if len(addrs) == 0 {
		addrs = []string{r.Addr}
	}
	tc, err := r.tlsConfig(nil)
	if err != nil {
		return nil, fmt.Errorf("redis.tls: %w", err)
	}
	u := &redis.UniversalOptions{
		Addrs: addrs, MasterName: r.MasterName, Username: r.Username, Password: pw, DB: r.DB, TLSConfig: tc,
		PoolSize: t.poolSize,
	}
	if t.check {
		u.ContextTimeoutEnabled, u.MaxRetries, u.PipelinePoolSize = true, -1, -1
	}
	switch r.ModeName() {
	case RedisCluster:
		cc := redis.NewClusterClient(u.Cluster())
		// go-redis reloads the slot map on MOVED and every minute, not when
		// a master stops answering: after a failover the commands of its
		// slots would fail for up to a minute. A failed dial to a node
		// reloads it (debounced by go-redis).
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(reloadOnDialError{cc}) })
		return cc, nil
	case RedisSentinel:
		return redis.NewFailoverClient(u.Failover()), nil
	}
	return redis.NewClient(u.Simple()), nil
}

// Describe says where Redis is for logs and errors: mode, addresses, user
// and TLS, never the password.
func (r RedisConfig) Describe() string {
	var b strings.Builder
	b.WriteString(r.ModeName())
	addrs := r.Addrs
	if len(addrs) == 0 {
		addrs = []string{r.Addr}
		if o, err := redis.ParseURL(r.Addr); err == nil && r.isURL() {
			addrs = []string{o.Addr} // without the URL's credentials
		}
	}
	b.WriteString(" " + strings.Join(addrs, ","))
	if r.MasterName != "" {
		b.WriteString(" master " + r.MasterName)
	}
	return b.String()
}

// user is the Redis user feedbackd logs in as, "default" without one.
func (r RedisConfig) user() string {
	if r.Username != "" {
		return r.Username
	}
	if o, err := redis.ParseURL(r.Addr); err == nil && r.isURL() && o.Username != "" {
		return o.Username
	}
	return "default"
}

// RedisError turns an error of a Redis command into one line that names
// the dependency and the cause, and holds no secret: what start-up logs and
// /readyz show. It returns nil for nil.
func (r RedisConfig) RedisError(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		recordHdr   tls.RecordHeaderError
		alert       tls.AlertError
		dnsErr      *net.DNSError
	)
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid username-password"),
		strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"):
		return fmt.Errorf("redis: authentication failed (user %s)", r.user())
	case strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("redis: permission denied for user %s (ACL: %s)", r.user(), firstLine(strings.TrimPrefix(msg, "NOPERM ")))
	case errors.As(err, &unknownAuth), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("redis: TLS verification failed (%s): %s", r.Describe(), tlsCause(err))
	case errors.As(err, &recordHdr), strings.Contains(msg, "first record does not look like a TLS handshake"):
		return fmt.Errorf("redis: TLS handshake failed (%s): the server does not speak TLS", r.Describe())
	case errors.As(err, &alert), strings.Contains(msg, "tls:"):
		return fmt.Errorf("redis: TLS handshake failed (%s): %s", r.Describe(), tlsCause(err))
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		strings.Contains(msg, "connection reset"):
		return fmt.Errorf("redis: unreachable (%s): the server closed the connection (does it want TLS? redis.tls.enabled)", r.Describe())
	case errors.As(err, &dnsErr):
		return fmt.Errorf("redis: unreachable (%s): cannot resolve %s", r.Describe(), dnsErr.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("redis: unreachable (%s): connection refused", r.Describe())
	case (errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "i/o timeout")) && r.tlsOn():
		return fmt.Errorf("redis: unreachable (%s): timed out (no answer to the TLS handshake: is it a TLS port?)", r.Describe())
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(msg, "i/o timeout"):
		return fmt.Errorf("redis: unreachable (%s): timed out", r.Describe())
	case strings.Contains(msg, "all sentinels specified in configuration are unreachable"):
		return fmt.Errorf("redis: unreachable (%s): no Sentinel answered with the master's address (are they up, and is redis.master_name right?)", r.Describe())
	case strings.Contains(msg, "CLUSTERDOWN"):
		return fmt.Errorf("redis: cluster down (%s)", r.Describe())
	}
	return fmt.Errorf("redis: %s (%s)", firstLine(redactPassword(msg, r)), r.Describe())
}

func tlsCause(err error) string {
	var unknownAuth x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownAuth):
		return "certificate signed by unknown authority (redis.tls.ca_file)"
	case errors.As(err, &hostname):
		return "certificate not valid for " + hostname.Host + " (redis.tls.server_name)"
	case errors.As(err, &invalid):
		return "certificate invalid: " + invalid.Error()
	}
	msg := err.Error()
	if strings.Contains(msg, "certificate required") {
		return "the server wants a client certificate (redis.tls.cert_file, redis.tls.key_file)"
	}
	if i := strings.Index(msg, "tls: "); i >= 0 {
		return msg[i:]
	}
	return msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// redactPassword removes the configured password from s, should a server
// or library ever echo it.
func redactPassword(s string, r RedisConfig) string {
	if pw, err := r.password(); err == nil && pw != "" {
		s = strings.ReplaceAll(s, pw, "***")
	}
	if o, err := redis.ParseURL(r.Addr); err == nil && o.Password != "" {
		s = strings.ReplaceAll(s, o.Password, "***")
	}
	return s
}

// checkRedis pings Redis once at start-up. A wrong password, a refused
// command or a TLS failure will not heal by waiting: it is returned, one
// line. An unreachable Redis may come up: it is logged, one line, and the
// run goes on (events wait, /readyz names it).
func checkRedis(ctx context.Context, r RedisConfig, rdb redis.UniversalClient, log *slog.Logger) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := r.RedisError(rdb.Ping(pctx).Err())
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "redis: unreachable") || strings.HasPrefix(msg, "redis: cluster down") {
		log.Warn(msg+"; waiting for it", "dependency", "redis")
		return nil
	}
	return err
}

// reloadOnDialError is a hook of a Cluster's node clients: a node that
// cannot be reached makes the cluster client read the slot map again.
type reloadOnDialError struct{ cc *redis.ClusterClient }

func (h reloadOnDialError) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.cc.ReloadState(ctx)
		}
		return c, err
	}
}

func (reloadOnDialError) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (reloadOnDialError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
