// Package testenv starts the real parts integration tests run against: a
// redis-server process and a kfake Kafka-protocol broker on loopback. Both
// are torn down with the test.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Redis is a redis-server process of one test.
type Redis struct {
	URL    string // redis.addr for feedbackd: unix:///... or redis://127.0.0.1:port
	Addr   string // host:port (TCP)
	Client *redis.Client
	cmd    *exec.Cmd
	port   int
	dir    string
	args   []string // more redis-server arguments
	tls    bool     // port is a TLS port; no plain TCP
}

// StartRedis starts redis-server on a free loopback port with persistence
// off; args are more redis-server arguments (--requirepass, --user, TLS:
// see StartRedisTLS). It fails the test if redis-server is not installed:
// `make test` installs it. Client logs in as the default user, without a
// password.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	r := newRedis(t, args...)
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { r.Client.Close() })
	return r
}

// newRedis starts a redis-server with args, stopped and removed with the
// test; the caller makes Client.
func newRedis(t testing.TB, args ...string) *Redis { return newRedisOn(t, false, args...) }

func newRedisOn(t testing.TB, tls bool, args ...string) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found: install it (apt-get install redis-server) or run `make test`, which does")
	}
	dir, err := os.MkdirTemp("", "fbredis")
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{dir: dir, port: freePort(t), args: args, tls: tls}
	r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.URL = "redis://" + r.Addr
	t.Cleanup(func() {
		r.Kill()
		os.RemoveAll(dir)
	})
	r.start(t, "redis-server")
	return r
}

func (r *Redis) start(t testing.TB, bin string) {
	t.Helper()
	ports := []string{"--port", fmt.Sprint(r.port)}
	if r.tls {
		ports = []string{"--port", "0", "--tls-port", fmt.Sprint(r.port)}
	}
	r.cmd = exec.Command(bin, append(append(ports, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")), r.args...)...)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", r.Addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			t.Fatalf("redis-server did not start: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server abruptly (SIGKILL); its data is gone.
func (r *Redis) Kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Hang stops the server (SIGSTOP) until the test ends or Resume: it
// accepts connections and answers nothing, like a Redis that hangs.
func (r *Redis) Hang(t testing.TB) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Resume)
}

// Resume lets a server stopped by Hang go on.
func (r *Redis) Resume() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Restart starts an empty server on the same port after Kill.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.start(t, "redis-server")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Kafka is a kfake cluster of one test.
type Kafka struct {
	Cluster *kfake.Cluster
	Seeds   []string
	opts    []kfake.Opt
}

// StartKafka starts a single-broker kfake cluster on a random loopback
// port. Topics are created by the code under test, as in production.
func StartKafka(t testing.TB, opts ...kfake.Opt) *Kafka {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(1)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Kafka{Cluster: c, Seeds: c.ListenAddrs(), opts: opts}
}

// Restart stops the broker, waits for down, and starts it again on the
// same port with the same options: with kfake.DataDir among them, topics,
// records and committed offsets survive, as across a real broker restart.
func (k *Kafka) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	_, port, _ := net.SplitHostPort(k.Seeds[0])
	k.Cluster.Close()
	time.Sleep(down)
	var p int
	fmt.Sscan(port, &p)
	c, err := kfake.NewCluster(append(k.opts, kfake.Ports(p))...)
	if err != nil {
		t.Fatalf("restart kfake: %v", err)
	}
	t.Cleanup(c.Close)
	k.Cluster = c
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every 10ms until it holds, failing the test with
// what after d.
func Eventually(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
