package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// onCluster points feedbackd at c, under its own key prefix so that
// scenarios can share one cluster; as the README's ACL user if acl.
func onCluster(c *testenv.RedisCluster, prefix string, acl bool) option {
	return withRedis(func(r *daemon.RedisConfig) {
		r.Addrs, r.Mode, r.KeyPrefix = c.Addrs[:1], daemon.RedisCluster, prefix // one seed is enough
		if acl {
			r.Username, r.Password = "feedbackd", "fb-redis-pw"
		}
	})
}

// The core scenarios on a real Redis Cluster of 3 masters and 3 replicas,
// as the README's ACL user: every script and multi-key command touches one
// hash slot (a CROSSSLOT error would fail them), SCAN sees every master,
// and no command is refused.
func TestOnRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, aclArgs()...)
	for i, sc := range []struct {
		name string
		run  func(*testing.T, ...option)
	}{
		{"deliver", testEveryStatusDeliveredOnceAndSigned},
		{"retry and DLQ", testRetryRejectAndExhaustion},
		{"replay", testReplayJobThroughAdminAPI},
		{"dedupe", testRereadRecordsAreNotSentAgain},
		{"breaker", testCircuitBreakerSharedProbesAndRecovers},
		{"config changes", testAdminAPI},
		{"gone disables", testGoneDisablesConfig},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, onCluster(c, "feedbackd:"+strconv.Itoa(i)+":", true)) })
	}
	// The keys are where the README's key layout says, spread over the
	// masters, and none without the prefix.
	ctx := t.Context()
	var masters atomic.Int32
	err := c.Client.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, "*").Result()
		for _, k := range keys {
			if !strings.HasPrefix(k, "feedbackd:") {
				t.Errorf("key %q outside the prefix", k)
			}
		}
		if len(keys) > 0 {
			masters.Add(1)
		}
		denied, _ := n.ACLLog(ctx, 100).Result()
		for _, e := range denied {
			t.Errorf("ACL denied %s %q (%s) on %v", e.Username, e.Object, e.Reason, n)
		}
		return err
	})
	if err != nil || masters.Load() != 3 {
		t.Fatalf("keys on %d of 3 masters (%v)", masters.Load(), err)
	}
}

// settlesAcrossFailover produces events, some failing once, some rejected,
// calls fail mid-stream, and waits for every event to end delivered or
// dead-lettered.
func settlesAcrossFailover(t *testing.T, h *harness, total int, fail func()) {
	t.Helper()
	rc := newReceiver(t, func(n int, d delivery) int {
		id := d.header.Get("webhook-id")
		if id[len(id)-1] == '7' && n == 1 {
			return 503
		}
		if id[len(id)-1] == '3' {
			return 400
		}
		return 200
	})
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))
	h.createWebhook(webhookConfig("org2", "sb2", rc.URL))
	want := map[string]string{}
	for i := range total {
		id := "f-" + strconv.Itoa(i)
		want[id] = "delivered"
		if id[len(id)-1] == '3' {
			want[id] = "dead-lettered"
		}
	}
	go func() {
		for i := range total {
			org := "org" + strconv.Itoa(1+i%2)
			h.produceEvent(newEvent("f-"+strconv.Itoa(i), org, "sb"+org[3:], "email", "delivered"))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	h.eventually("some progress", 30*time.Second, func() bool { return rc.count() > total/5 })
	fail()
	h.eventually("every event delivered or dead-lettered", 90*time.Second, func() bool {
		got := outcomes(h, rc)
		for id, w := range want {
			if got[id] != w {
				return false
			}
		}
		return true
	})
	// How long deliveries paused: the longest gap between two requests.
	var gap time.Duration
	ds := rc.deliveries()
	for i := 1; i < len(ds); i++ {
		gap = max(gap, ds[i].at.Sub(ds[i-1].at))
	}
	t.Logf("%d requests for %d events; deliveries paused for at most %s", rc.count(), total, gap.Round(10*time.Millisecond))
}

// A Cluster master is killed mid-stream (the one holding the configs
// marker: the configs are rebuilt too); its replica takes over and every
// event ends delivered or dead-lettered.
func TestRedisClusterMasterKilledMidStream(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	h := start(t, func(cfg *daemon.Config) { cfg.Configs.CacheTTL = time.Nanosecond }, onCluster(c, "feedbackd:", false))
	settlesAcrossFailover(t, h, 200, func() {
		t.Logf("killed master %s", c.KillMasterOf(t, "feedbackd:{configs}:loaded"))
	})
}

// The Sentinel-monitored master is killed mid-stream: consumption pauses,
// the Sentinels promote the replica, feedbackd follows; nothing is lost.
func TestRedisSentinelFailoverMidStream(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	h := start(t, func(cfg *daemon.Config) { cfg.Configs.CacheTTL = time.Nanosecond }, withRedis(func(r *daemon.RedisConfig) {
		r.Addrs, r.MasterName = s.Sentinels, s.MasterName
	}))
	old := s.Master.Addr
	settlesAcrossFailover(t, h, 200, func() {
		s.Master.Kill()
		h.eventually("the Sentinels to promote the replica", 30*time.Second, func() bool {
			a := s.MasterAddr(t)
			return a != "" && a != old
		})
	})
}

// aclUser is the README's ACL for feedbackd: its key prefix and only the
// commands it uses.
const aclUser = "feedbackd on >fb-redis-pw ~feedbackd:* resetchannels -@all " +
	"+ping +hello +auth +info +cluster|slots +cluster|shards +command " +
	"+get +set +del +exists +expire +pexpire +pexpireat +persist +incr " +
	"+hget +hset +hdel +hgetall +zadd +zrem +zremrangebyscore +zrevrange +zcard +sadd +sismember +scan +evalsha +eval " +
	"+xadd +xtrim +xrange +xrevrange +hincrby"

// aclArgs are redis-server arguments creating aclUser.
func aclArgs() []string { return append([]string{"--user"}, strings.Fields(aclUser)...) }

// feedbackd runs end to end on a Redis that wants TLS (verified against
// the test's CA), a password (from a file) and an ACL user limited to the
// prefix and the commands the README lists: nothing is refused.
func TestRedisWithTLSPasswordAndACL(t *testing.T) {
	f := testenv.WriteTLSFiles(t, "127.0.0.1", "localhost")
	r := testenv.StartRedisTLS(t, f, false, append(append([]string{"--user"}, strings.Fields("default on >admin-pw ~* &* +@all")...), aclArgs()...)...)
	pw := filepath.Join(t.TempDir(), "redis-password")
	os.WriteFile(pw, []byte("fb-redis-pw\n"), 0o600)
	var logs syncBuffer
	testEveryStatusDeliveredOnceAndSigned(t, withLogs(&logs), withRedis(func(c *daemon.RedisConfig) {
		c.Addr, c.Username, c.PasswordFile = r.URL, "feedbackd", pw
		c.TLS = daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA}
	}))
	if strings.Contains(logs.String(), "fb-redis-pw") {
		t.Error("the Redis password is in the logs")
	}
	admin := redis.NewClient(&redis.Options{Addr: r.Addr, Password: "admin-pw", TLSConfig: tlsTrusting(t, f)})
	defer admin.Close()
	denied, err := admin.ACLLog(t.Context(), 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range denied {
		t.Errorf("ACL denied %s %q (%s)", e.Username, e.Object, e.Reason)
	}
}

// mTLS: the server wants a client certificate of its CA; feedbackd shows
// redis.tls.cert_file.
func TestRedisWithClientCertificate(t *testing.T) {
	f := testenv.WriteTLSFiles(t, "127.0.0.1", "localhost")
	r := testenv.StartRedisTLS(t, f, true)
	testEveryStatusDeliveredOnceAndSigned(t, withRedis(func(c *daemon.RedisConfig) {
		c.Addr = r.Addr
		c.TLS = daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, ServerName: "localhost"}
	}))
}

// Each misconfiguration stops start-up with one line naming Redis and the
// cause, without the password; an unreachable Redis is waited for and
// /readyz names it.
func TestRedisStartupErrors(t *testing.T) {
	f := testenv.WriteTLSFiles(t, "127.0.0.1")
	other := testenv.WriteTLSFiles(t, "127.0.0.1")
	tlsRedis := testenv.StartRedisTLS(t, f, false, "--requirepass", "right-password-123")
	mtlsRedis := testenv.StartRedisTLS(t, f, true)
	plain := testenv.StartRedis(t, aclArgs()...)
	kafka := testenv.StartKafka(t)
	sentinels := testenv.StartRedisSentinel(t)
	tests := []struct {
		name   string
		redis  func(*daemon.RedisConfig)
		want   string
		starts bool // waits for Redis instead of stopping
	}{
		{"wrong password", func(c *daemon.RedisConfig) {
			c.Addr, c.Username, c.Password = plain.Addr, "feedbackd", "wrong-password-456"
		}, "redis: authentication failed (user feedbackd)", false},
		{"wrong password over TLS", func(c *daemon.RedisConfig) {
			c.Addr, c.Password, c.TLS = tlsRedis.Addr, "wrong-password-456", daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA}
		}, "redis: authentication failed (user default)", false},
		{"unknown CA", func(c *daemon.RedisConfig) {
			c.Addr, c.Password, c.TLS = tlsRedis.Addr, "right-password-123", daemon.RedisTLSConfig{Enabled: true, CAFile: other.CA}
		}, "redis: TLS verification failed (standalone " + tlsRedis.Addr + "): certificate signed by unknown authority (redis.tls.ca_file)", false},
		{"wrong server name", func(c *daemon.RedisConfig) {
			c.Addr, c.Password, c.TLS = tlsRedis.Addr, "right-password-123", daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA, ServerName: "redis.example"}
		}, "redis: TLS verification failed (standalone " + tlsRedis.Addr + "): certificate not valid for redis.example (redis.tls.server_name)", false},
		{"no client certificate", func(c *daemon.RedisConfig) {
			c.Addr, c.TLS = mtlsRedis.Addr, daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA}
		}, "redis: TLS handshake failed (standalone " + mtlsRedis.Addr + "): the server wants a client certificate (redis.tls.cert_file, redis.tls.key_file)", false},
		{"TLS to a plain server", func(c *daemon.RedisConfig) {
			c.Addr, c.TLS = plain.Addr, daemon.RedisTLSConfig{Enabled: true, CAFile: f.CA}
		}, "redis: unreachable (standalone " + plain.Addr + "): timed out (no answer to the TLS handshake: is it a TLS port?)", true},
		{"no TLS to a TLS server", func(c *daemon.RedisConfig) { c.Addr = tlsRedis.Addr },
			"redis: unreachable (standalone " + tlsRedis.Addr + "): the server closed the connection (does it want TLS? redis.tls.enabled)", true},
		{"unknown Sentinel master", func(c *daemon.RedisConfig) { c.Addrs, c.MasterName = sentinels.Sentinels[:1], "nosuchmaster" },
			"redis: unreachable (sentinel " + sentinels.Sentinels[0] + " master nosuchmaster): no Sentinel answered with the master's address (are they up, and is redis.master_name right?)", true},
		{"unreachable", func(c *daemon.RedisConfig) { c.Addr = "127.0.0.1:1" },
			"redis: unreachable (standalone 127.0.0.1:1): connection refused", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := daemon.Defaults()
			cfg.Kafka.Brokers = kafka.Seeds
			cfg.HTTP.Addr = "127.0.0.1:0"
			cfg.Admin.Token = token
			cfg.Secrets.Keys = []string{secretsKey}
			tt.redis(&cfg.Redis)
			var logs syncBuffer
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			api := make(chan string, 1)
			done := make(chan error, 1)
			go func() {
				done <- daemon.Run(ctx, cfg, daemon.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registry: prometheus.NewRegistry(),
					Listening: func(a net.Addr) { api <- "http://" + a.String() }})
			}()
			defer func() {
				if strings.Contains(logs.String(), "password-") {
					t.Errorf("a password is in the logs:\n%s", logs.String())
				}
			}()
			if !tt.starts {
				select {
				case err := <-done:
					if err == nil || err.Error() != tt.want {
						t.Fatalf("Run = %v, want %q", err, tt.want)
					}
				case <-api:
					t.Fatal("started")
				}
				return
			}
			var base string
			select {
			case base = <-api:
			case err := <-done:
				t.Fatalf("Run = %v, want it to wait for Redis", err)
			}
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Checks map[string]string }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 503 || body.Checks["redis"] != tt.want {
				t.Errorf("/readyz %d %v, want 503 and redis: %q", resp.StatusCode, body.Checks, tt.want)
			}
			if n := strings.Count(logs.String(), tt.want); n != 1 {
				t.Errorf("%d log lines say %q, want 1:\n%s", n, tt.want, logs.String())
			}
			cancel()
			<-done
		})
	}
}

// tlsTrusting is a client TLS configuration trusting f's CA.
func tlsTrusting(t *testing.T, f testenv.TLSFiles) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
