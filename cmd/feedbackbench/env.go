package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
)

// env is what one run has started; close stops all of it.
type env struct {
	o         options
	brokers   []string
	kopts     []kgo.Opt // seeds, TLS and SASL of the producer
	redis     string    // FEEDBACKD_REDIS_ADDR, or FEEDBACKD_REDIS_ADDRS for a cluster
	redisKind string
	endpoints []string  // the receiver's host:port, one per --hosts address
	control   string    // the receiver's control API, host:port
	deadPort  int       // of the dead tenant's endpoint, on 127.0.0.1 (--dead-tenant)
	tls       *benchTLS // with --tls
	others    []proc    // receiver, redis-server and this process (broker, producer), for their CPU
	cleanup   []func()
	daemon    *daemonProc
	daemonLog *logCount // every feedbackd's log, passed through to stderr and counted
	memPeak   memPeak   // feedbackd's memory at its peak over the throughput rounds
	producer  *kgo.Client
	http      *http.Client
	// receiverPID is the receiver's process, for its open-file limit.
	receiverPID int
}

func (e *env) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// kafkaFromEnv reads the connection settings from feedbackd's variables.
func kafkaFromEnv(brokers []string) *kafkaconn.Config {
	g := func(field string) string { return os.Getenv(envKey(field)) }
	b := func(field string) bool { v, _ := strconv.ParseBool(g(field)); return v }
	return &kafkaconn.Config{
		Brokers: brokers,
		TLS: kafkaconn.TLS{Enabled: b("tls.enabled"), CAFile: g("tls.ca_file"), CertFile: g("tls.cert_file"), KeyFile: g("tls.key_file"),
			ServerName: g("tls.server_name"), InsecureSkipVerify: b("tls.insecure_skip_verify")},
		SASL: kafkaconn.SASL{Mechanism: g("sasl.mechanism"), Username: g("sasl.username"), Password: g("sasl.password"),
			PasswordFile: g("sasl.password_file"), TokenFile: g("sasl.token_file")},
	}
}

// envKey names a kafkaconn field as feedbackd's variable.
func envKey(field string) string {
	return "FEEDBACKD_KAFKA_" + strings.ToUpper(strings.ReplaceAll(field, ".", "_"))
}

func (e *env) startBroker() error {
	if e.o.brokers != "" {
		e.brokers = strings.Split(e.o.brokers, ",")
		kconn := kafkaFromEnv(e.brokers)
		if err := kconn.Validate(envKey); err != nil {
			return err
		}
		var err error
		if e.kopts, err = kconn.Opts(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return kconn.Check(ctx, e.kopts...)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FEEDBACKD_KAFKA_TLS_") || strings.HasPrefix(kv, "FEEDBACKD_KAFKA_SASL_") {
			return fmt.Errorf("%s is for --brokers: the kfake broker in this process has no TLS or SASL", strings.SplitN(kv, "=", 2)[0])
		}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	e.cleanup = append(e.cleanup, c.Close)
	e.brokers = c.ListenAddrs()
	e.kopts = []kgo.Opt{kgo.SeedBrokers(e.brokers...)}
	e.others = append(e.others, proc{"broker+producer", os.Getpid()})
	logf("broker: kfake on %s", e.brokers[0])
	return nil
}

func (e *env) startRedis() error {
	if e.o.redis != "" {
		e.redis, e.redisKind = "FEEDBACKD_REDIS_ADDR="+e.o.redis, "given"
		return nil
	}
	if !e.o.redisCluster {
		addr, err := e.startRedisServer("redis")
		e.redis, e.redisKind = "FEEDBACKD_REDIS_ADDR="+addr, "standalone"
		return err
	}
	var addrs []string
	for i := range 3 {
		addr, err := e.startRedisServer(fmt.Sprintf("redis-%d", i+1), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		if err != nil {
			return err
		}
		addrs = append(addrs, addr)
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create (apt-get install redis-tools): %v: %s", err, out)
	}
	for range 200 {
		info, _ := exec.Command("redis-cli", "-u", "redis://"+addrs[0], "cluster", "info").Output()
		if strings.Contains(string(info), "cluster_state:ok") {
			e.redis, e.redisKind = "FEEDBACKD_REDIS_ADDRS="+strings.Join(addrs, ","), "cluster of 3 masters"
			logf("redis: cluster %s", strings.Join(addrs, ","))
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the Redis Cluster did not become ok")
}

// startRedisServer starts one redis-server named name (for the CPU
// report) with args, and returns its address.
func (e *env) startRedisServer(name string, args ...string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "feedbackbench-redis")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, args...)...)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("redis-server (apt-get install redis-server, or --redis): %w", err)
	}
	e.cleanup = append(e.cleanup, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); os.RemoveAll(dir) })
	e.others = append(e.others, proc{name, cmd.Process.Pid})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			logf("%s: %s", name, addr)
			return addr, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("redis-server did not start on %s", addr)
}

func (e *env) startReceiver() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"receiver", "--latency", e.o.latency.String(), "--slow-after", "10s", "--hosts", strconv.Itoa(e.o.hosts)}
	if e.o.deadTenant {
		if e.deadPort, err = freePort(); err != nil {
			return err
		}
		args = append(args, "--dead-port", strconv.Itoa(e.deadPort))
	}
	if e.o.tls {
		ips := hostIPs(e.o.hosts)
		if e.o.hosts > 1 {
			ips = append(ips, net.IPv4(127, 0, 0, 1))
		}
		if e.tls, err = makeTLS(ips); err != nil {
			return fmt.Errorf("--tls: %w", err)
		}
		e.cleanup = append(e.cleanup, func() { os.RemoveAll(e.tls.dir) })
		args = append(args, "--tls-dir", e.tls.dir)
	}
	cmd := exec.Command(self, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("receiver did not start: %w", err)
	}
	var addrs receiverAddrs
	if err := json.Unmarshal(line, &addrs); err != nil || len(addrs.Endpoints) == 0 {
		return fmt.Errorf("receiver: unexpected first line %q", line)
	}
	e.endpoints, e.control = addrs.Endpoints, addrs.Control
	e.others = append(e.others, proc{"receiver", cmd.Process.Pid})
	e.receiverPID = cmd.Process.Pid
	hosts := e.endpoints[0]
	if n := len(e.endpoints); n > 1 {
		hosts = fmt.Sprintf("%d hosts, %s to %s", n, e.endpoints[0], e.endpoints[n-1])
	}
	logf("receiver: %s, %s (own process, pid %d, latency %s)", map[bool]string{false: "HTTP", true: "HTTPS"}[e.o.tls], hosts, cmd.Process.Pid, e.o.latency)
	return nil
}

// endpoint is the URL of tenant i's endpoint under path (t or slow): the
// tenants go to the hosts round robin.
func (e *env) endpoint(path string, i int) string {
	scheme := "http"
	if e.tls != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/%s/%d", scheme, e.endpoints[i%len(e.endpoints)], path, i)
}

const adminToken = "feedbackbench-admin-token"

// daemonProc is a running feedbackd.
type daemonProc struct {
	cmd      *exec.Cmd
	api      string
	pprof    string // host:port of its profiles, if asked for
	outcomes bool   // outcomes.enabled
	started  time.Time
	done     chan struct{}
}

// restartDaemon stops feedbackd and starts it again with outcomes on or
// off, unless it runs so already.
func (e *env) restartDaemon(outcomes bool) error {
	if e.daemon.outcomes == outcomes {
		return nil
	}
	e.daemon.stop()
	d, err := e.startDaemon(outcomes)
	if err != nil {
		return err
	}
	e.daemon = d
	return nil
}

// startDaemon starts feedbackd, with outcomes on or off.
func (e *env) startDaemon(outcomes bool) (*daemonProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemonProc{api: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{}), outcomes: outcomes}
	d.cmd = exec.Command(e.o.feedbackd)
	if e.o.pprof != "" {
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		d.pprof = fmt.Sprintf("127.0.0.1:%d", pp)
		d.cmd.Args = append(d.cmd.Args, "--pprof-addr", d.pprof)
	}
	d.cmd.Env = append(os.Environ(),
		"FEEDBACKD_KAFKA_BROKERS="+strings.Join(e.brokers, ","),
		e.redis,
		fmt.Sprintf("FEEDBACKD_HTTP_ADDR=127.0.0.1:%d", port),
		"FEEDBACKD_ADMIN_TOKEN="+adminToken,
		"FEEDBACKD_SECRETS_KEYS=ZmVlZGJhY2tiZW5jaC1zZWNyZXRzLWtleS0zMmJ5dGU=",
		"FEEDBACKD_DELIVERY_ALLOW_HTTP=true",
		"FEEDBACKD_DELIVERY_ALLOW_PRIVATE_NETWORKS=true",
		fmt.Sprintf("FEEDBACKD_DELIVERY_CONCURRENCY=%d", e.o.concurrency),
		"FEEDBACKD_LOG_LEVEL=warn",
		"FEEDBACKD_LOG_FORMAT=json", // what logCount reads, whatever the caller's environment says
		fmt.Sprintf("FEEDBACKD_OUTCOMES_ENABLED=%t", outcomes),
	)
	if e.o.gomemlimit != "" {
		d.cmd.Env = append(d.cmd.Env, "GOMEMLIMIT="+e.o.gomemlimit)
	}
	if e.tls != nil {
		// feedbackd trusts the system roots for deliveries; on Linux,
		// SSL_CERT_FILE replaces the bundle file (the certificate
		// directories are still read).
		d.cmd.Env = append(d.cmd.Env, "SSL_CERT_FILE="+filepath.Join(e.tls.dir, caFile))
	}
	if e.daemonLog == nil {
		e.daemonLog = newLogCount(os.Stderr)
	}
	d.cmd.Stderr = e.daemonLog
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("feedbackd (%s; `make build` makes it): %w", e.o.feedbackd, err)
	}
	d.started = time.Now()
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	e.cleanup = append(e.cleanup, d.stop)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return nil, fmt.Errorf("feedbackd exited at start-up")
		default:
		}
		if resp, err := e.http.Get(d.api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				logf("feedbackd: pid %d ready on %s, outcomes %s", d.cmd.Process.Pid, d.api, map[bool]string{false: "off", true: "on"}[outcomes])
				return d, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("feedbackd not ready after 2m")
}

func (d *daemonProc) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(40 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// gomemlimit is feedbackd's GOMEMLIMIT: --gomemlimit, or the environment's.
func (e *env) gomemlimit() string {
	if e.o.gomemlimit != "" {
		return e.o.gomemlimit
	}
	return os.Getenv("GOMEMLIMIT")
}
