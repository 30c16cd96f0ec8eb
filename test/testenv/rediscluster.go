package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a real Redis Cluster of three masters with one replica
// each, on loopback, torn down with the test.
type RedisCluster struct {
	Addrs  []string // every node, host:port
	Client *redis.ClusterClient
	nodes  map[string]*Redis // by address
}

// StartRedisCluster starts six cluster-enabled redis-servers with args
// (e.g. --user rules; the default user must stay open for redis-cli and
// Client) and joins them with `redis-cli --cluster create
// --cluster-replicas 1`. A replica takes over a master that stops
// answering for 2 s.
func StartRedisCluster(t testing.TB, args ...string) *RedisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not found: install redis-tools, or run `make deps`")
	}
	c := &RedisCluster{nodes: map[string]*Redis{}}
	for range 6 {
		// The cluster bus port is asked for too: by default it is the
		// port + 10,000, which another program's connection may hold.
		r := newRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", fmt.Sprint(freePort(t)),
			"--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0"}, args...)...)
		c.Addrs = append(c.Addrs, r.Addr)
		c.nodes[r.Addr] = r
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, c.Addrs...),
		"--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { c.Client.Close() })
	c.WaitHealthy(t, 30*time.Second)
	return c
}

// WaitHealthy waits until every live node says cluster_state:ok and the
// client reaches every slot's master.
func (c *RedisCluster) WaitHealthy(t testing.TB, d time.Duration) {
	t.Helper()
	Eventually(t, "the Redis Cluster healthy", d, func() bool {
		for addr, r := range c.nodes {
			if r.cmd == nil {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: addr})
			info, err := cl.ClusterInfo(context.Background()).Result()
			cl.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Client.ReloadState(ctx)
		return c.Client.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }) == nil
	})
}

// KillMasterOf kills the master holding key's slot (SIGKILL) and returns
// its address; its replica takes over within a few seconds.
func (c *RedisCluster) KillMasterOf(t testing.TB, key string) string {
	t.Helper()
	ctx := context.Background()
	slot := c.Client.ClusterKeySlot(ctx, key).Val()
	slots, err := c.Client.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			addr := s.Nodes[0].Addr
			r := c.nodes[addr]
			if r == nil {
				t.Fatalf("no node %s", addr)
			}
			r.Kill()
			return addr
		}
	}
	t.Fatalf("no master for slot %d", slot)
	return ""
}

// RedisSentinel is a master, one replica and three Sentinels (quorum 2)
// monitoring them as MasterName, on loopback.
type RedisSentinel struct {
	MasterName string
	Sentinels  []string // host:port of the Sentinels
	Master     *Redis
	Replica    *Redis
}

// StartRedisSentinel starts the master, its replica and the Sentinels
// (`redis-server <conf> --sentinel`), and waits until the Sentinels know
// each other and the replica. A master down for 1 s is failed over.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{MasterName: "fbmaster"}
	s.Master = StartRedis(t)
	s.Replica = StartRedis(t, "--replicaof", "127.0.0.1", fmt.Sprint(s.Master.port))
	for range 3 {
		dir := t.TempDir()
		port := freePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %[4]s 1000\n"+
			"sentinel failover-timeout %[4]s 5000\nsentinel parallel-syncs %[4]s 1\n",
			port, dir, filepath.Join(dir, "sentinel.log"), s.MasterName, s.Master.port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", conf, "--sentinel")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sentinel: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		s.Sentinels = append(s.Sentinels, fmt.Sprintf("127.0.0.1:%d", port))
	}
	Eventually(t, "the Sentinels to know each other and the replica", 30*time.Second, func() bool {
		for _, addr := range s.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
			others, err1 := sc.Sentinels(context.Background(), s.MasterName).Result()
			replicas, err2 := sc.Replicas(context.Background(), s.MasterName).Result()
			sc.Close()
			if err1 != nil || err2 != nil || len(others) != 2 || len(replicas) != 1 {
				return false
			}
		}
		return true
	})
	return s
}

// MasterAddr is the master the first Sentinel names now.
func (s *RedisSentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
	if err != nil {
		return ""
	}
	return net.JoinHostPort(a[0], a[1])
}

// TLSFiles are a CA and a certificate signed by it for 127.0.0.1 and
// localhost, usable by servers and clients, written by the test.
type TLSFiles struct {
	CA, Cert, Key string
}

// WriteTLSFiles generates a CA and a certificate for names (IPs or DNS
// names) into a temporary directory.
func WriteTLSFiles(t testing.TB, names ...string) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feedbackd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	f := TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.CA, "CERTIFICATE", caDER)
	write(f.Cert, "CERTIFICATE", der)
	write(f.Key, "EC PRIVATE KEY", keyDER)
	return f
}

// StartRedisTLS starts redis-server speaking only TLS, with f's
// certificate; clients must show a certificate of f's CA if mTLS. Addr is
// its TLS port; Client is nil.
func StartRedisTLS(t testing.TB, f TLSFiles, mTLS bool, args ...string) *Redis {
	t.Helper()
	auth := "no"
	if mTLS {
		auth = "yes"
	}
	r := newRedisOn(t, true, append([]string{"--tls-cert-file", f.Cert, "--tls-key-file", f.Key,
		"--tls-ca-cert-file", f.CA, "--tls-auth-clients", auth}, args...)...)
	r.URL = "rediss://" + r.Addr
	return r
}
