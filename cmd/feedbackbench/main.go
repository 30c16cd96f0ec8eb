// Command feedbackbench measures feedbackd end to end on this machine: it
// starts a broker (kfake, or --brokers), redis-server, a receiver in its own
// process and feedbackd as a separate process, registers the tenants'
// configs, and prints the raw HTTP ceiling, feedbackd's deliveries/s and
// their ratio, end-to-end latency at half the ceiling, CPU seconds per 1,000
// deliveries and feedbackd's peak RSS. `make bench` runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

const usage = `feedbackbench: measure feedbackd end to end on this machine.

Usage:
  feedbackbench [flags]

It starts a broker (kfake in this process, unless --brokers), redis-server
(unless --redis; three cluster-enabled ones with --redis-cluster), a receiver in
its own process and feedbackd (--feedbackd) as a separate process; registers
--tenants webhook configs; then measures:
  ceiling      the receiver's rate from a plain net/http client sending
               feedbackd's requests (same body size and headers), same
               concurrency, no Kafka; and the rate of feedbackd's own
               sender (pkg/deliver) alone
  throughput   feedbackd's deliveries/s draining --events events, in
               --rounds rounds after a warm-up round (a tenth of --events),
               each between two ceiling rounds of --duration and compared
               with their mean (the machine's speed drifts); the median
               round and ratio count, and the worst is shown
  latency      p50/p95/p99 from produce to arrival at half the ceiling
               measured last (just before), and again at half feedbackd's
               measured rate
  allocations  feedbackd's Go allocations (count, bytes) per delivery,
               from its go_memstats_* metrics over the throughput phase
  cpu          CPU seconds per 1,000 deliveries of feedbackd, and of the
               receiver, redis-server and this process (broker, producer)
  peak RSS     feedbackd's VmHWM
With --slow-tenant or --dead-tenant, --rounds more rounds give one tenant's
endpoint (slow: answers after 10 s; dead: refuses connections) its share of
events, and the other tenants' ratio to the ceiling is compared with the
healthy one.
With --backlog N, feedbackd is stopped, N events are produced, and it is
started again to drain them (its peak RSS is then that run's).
With --brokers, a secured cluster is reached with feedbackd's own variables,
which the feedbackd it starts inherits and its producer reads too:
FEEDBACKD_KAFKA_TLS_ENABLED, _TLS_CA_FILE, _TLS_CERT_FILE, _TLS_KEY_FILE,
_TLS_SERVER_NAME, _TLS_INSECURE_SKIP_VERIFY, FEEDBACKD_KAFKA_SASL_MECHANISM,
_SASL_USERNAME, _SASL_PASSWORD, _SASL_PASSWORD_FILE, _SASL_TOKEN_FILE.

Flags:
`

type options struct {
	feedbackd    string
	brokers      string
	redis        string
	redisCluster bool
	events       int
	tenants      int
	latency      time.Duration
	slowTenant   bool
	deadTenant   bool
	backlog      int
	concurrency  int
	duration     time.Duration
	rounds       int // healthy throughput rounds, each between two ceiling rounds
	jsonOut      bool
	pprof        string
}

// round is one throughput round between two ceiling rounds; its ratios
// are to their means.
type round struct {
	CeilingBefore    float64 `json:"ceiling_before_per_s"`
	SenderBefore     float64 `json:"sender_before_per_s"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	CeilingAfter     float64 `json:"ceiling_after_per_s"`
	SenderAfter      float64 `json:"sender_after_per_s"`
	Ratio            float64 `json:"ratio"`
	SenderRatio      float64 `json:"ratio_to_sender"`
}

// ceilingPoint is one ceiling round of each client.
type ceilingPoint struct{ raw, sender float64 }

func newRound(before ceilingPoint, rate float64, after ceilingPoint) round {
	return round{
		CeilingBefore: before.raw, SenderBefore: before.sender, DeliveriesPerSec: rate, CeilingAfter: after.raw, SenderAfter: after.sender,
		Ratio: rate / ((before.raw + after.raw) / 2), SenderRatio: rate / ((before.sender + after.sender) / 2),
	}
}

// column is f of each round.
func column(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// median of xs, which is not empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// result is one run's figures; JSON field names are stable for comparison
// over time.
type result struct {
	Machine           string  `json:"machine"`
	Tenants           int     `json:"tenants"`
	Events            int     `json:"events"`
	ReceiverLatencyMS float64 `json:"receiver_latency_ms"`
	Scenario          string  `json:"scenario"`
	Redis             string  `json:"redis"` // "standalone", "cluster of 3 masters" or "given"
	// Rounds are the healthy throughput rounds, each with the raw ceiling
	// (a plain net/http client sending feedbackd's requests, no Kafka)
	// measured just before and just after it; a round's ratio is its rate
	// over the mean of the two. CeilingPerSec is the best ceiling round,
	// DeliveriesPerSec and Ratio the medians of the rounds, WorstRatio the
	// lowest. The same rounds also measure feedbackd's own sender
	// (signing, its transport) without Kafka, Redis or parsing:
	// SenderCeilingPerSec is its best round, SenderRatio the median of the
	// rounds' rates over the mean of the sender's rounds around them.
	Rounds              []round `json:"rounds"`
	CeilingPerSec       float64 `json:"ceiling_per_s"`
	SenderCeilingPerSec float64 `json:"sender_ceiling_per_s"`
	DeliveriesPerSec    float64 `json:"deliveries_per_s"`
	Ratio               float64 `json:"ratio"`
	WorstRatio          float64 `json:"ratio_worst_round"`
	SenderRatio         float64 `json:"ratio_to_sender"`
	// BadRounds are the rounds with the slow or dead tenant getting its
	// share, timed like Rounds; their rates are the other tenants'.
	// OthersPerSec is their median rate, OthersVsHealthy their median
	// ratio over the healthy one.
	BadRounds       []round `json:"bad_rounds,omitempty"`
	OthersPerSec    float64 `json:"others_per_s,omitempty"`
	OthersVsHealthy float64 `json:"others_vs_healthy,omitempty"`
	OfferedPerSec   float64 `json:"latency_offered_per_s"`
	P50MS           float64 `json:"p50_ms"`
	P95MS           float64 `json:"p95_ms"`
	P99MS           float64 `json:"p99_ms"`
	CPUPer1000      float64 `json:"cpu_s_per_1000"`
	// CPU seconds per 1,000 deliveries of what shares the machine in the
	// throughput phase: the receiver, redis-server, and this process
	// (kfake broker and producer).
	OthersCPUPer1000  map[string]float64 `json:"others_cpu_s_per_1000,omitempty"`
	AllocsPerDelivery float64            `json:"allocs_per_delivery"`
	BytesPerDelivery  float64            `json:"alloc_bytes_per_delivery"`
	SustainedPerSec   float64            `json:"latency_sustained_per_s"`
	SustainedP50MS    float64            `json:"sustained_p50_ms"`
	SustainedP95MS    float64            `json:"sustained_p95_ms"`
	SustainedP99MS    float64            `json:"sustained_p99_ms"`
	PeakRSSMiB        float64            `json:"peak_rss_mib"`
	Backlog           int                `json:"backlog,omitempty"`
	BacklogPerSec     float64            `json:"backlog_deliveries_per_s,omitempty"`
	BacklogPeakRSSMiB float64            `json:"backlog_peak_rss_mib,omitempty"`
	FeedbackdCPUCores float64            `json:"feedbackd_cpu_cores"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "receiver" {
		os.Exit(receiverMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var o options
	fs := flag.NewFlagSet("feedbackbench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and --help are answered below
	fs.Usage = func() {}
	fs.StringVar(&o.feedbackd, "feedbackd", "bin/feedbackd", "feedbackd binary to run")
	fs.StringVar(&o.brokers, "brokers", "", "Kafka seed brokers (comma-separated); default: kfake in this process")
	fs.StringVar(&o.redis, "redis", "", "Redis host:port; default: start redis-server")
	fs.BoolVar(&o.redisCluster, "redis-cluster", false, "start a Redis Cluster of 3 masters (no replicas) instead of one redis-server; compare with a run without it")
	fs.IntVar(&o.events, "events", 100_000, "events per throughput run")
	fs.IntVar(&o.tenants, "tenants", 100, "tenants (webhook configs), each with its own endpoint path")
	fs.DurationVar(&o.latency, "receiver-latency", 0, "receiver's delay before answering")
	fs.BoolVar(&o.slowTenant, "slow-tenant", false, "one tenant's endpoint answers after 10s")
	fs.BoolVar(&o.deadTenant, "dead-tenant", false, "one tenant's endpoint refuses connections")
	fs.IntVar(&o.backlog, "backlog", 0, "also drain this many events produced while feedbackd is stopped")
	fs.IntVar(&o.concurrency, "concurrency", 256, "delivery.concurrency, and the ceiling client's concurrency")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of a ceiling round and of the latency phases")
	fs.IntVar(&o.rounds, "rounds", 3, "healthy throughput rounds of --events, each compared with the mean of the ceilings measured just before and after it")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&o.pprof, "pprof", "", "write a CPU profile of feedbackd during the throughput run to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Print(usage)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(os.Stderr, "feedbackbench: %v\nRun feedbackbench --help for the flags.\n", err)
		return 2
	}
	if o.tenants < 1 || o.events < 1 || o.rounds < 1 || (o.slowTenant && o.deadTenant) || ((o.slowTenant || o.deadTenant) && o.tenants < 2) {
		fmt.Fprintln(os.Stderr, "feedbackbench: --tenants, --events and --rounds must be positive; --slow-tenant and --dead-tenant exclude each other and need --tenants >= 2")
		return 2
	}
	res, err := bench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "feedbackbench:", err)
		return 1
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		printTable(res)
	}
	return 0
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

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// env is what one run has started; close stops all of it.
type env struct {
	o         options
	brokers   []string
	kopts     []kgo.Opt // seeds, TLS and SASL of the producer
	redis     string    // FEEDBACKD_REDIS_ADDR, or FEEDBACKD_REDIS_ADDRS for a cluster
	redisKind string
	receiver  string // host:port
	others    []proc // receiver, redis-server and this process (broker, producer), for their CPU
	cleanup   []func()
	daemon    *daemonProc
	producer  *kgo.Client
	http      *http.Client
}

func (e *env) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

func bench(o options) (res result, err error) {
	e := &env{o: o, http: &http.Client{Timeout: 30 * time.Second}}
	defer e.close()
	res = result{Machine: machine(), Tenants: o.tenants, Events: o.events, ReceiverLatencyMS: float64(o.latency) / 1e6, Scenario: o.scenario(), Backlog: o.backlog}
	if err := e.startBroker(); err != nil {
		return res, err
	}
	if err := e.startRedis(); err != nil {
		return res, err
	}
	res.Redis = e.redisKind
	if err := e.startReceiver(); err != nil {
		return res, err
	}
	if e.daemon, err = e.startDaemon(); err != nil {
		return res, err
	}
	if err := e.createTenants(); err != nil {
		return res, err
	}
	p, err := kgo.NewClient(append(slices.Clone(e.kopts), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))...)
	if err != nil {
		return res, err
	}
	e.producer = p
	e.cleanup = append(e.cleanup, p.Close)

	logf("ceilings: %d concurrent POSTs of %d bytes, rounds of %s", o.concurrency, len(payload(0)), o.duration)
	netHTTP, closeNetHTTP := e.netHTTPPost()
	defer closeNetHTTP()
	sender, closeSender, err := e.senderPost()
	if err != nil {
		return res, err
	}
	defer closeSender()
	// ceilings measures both: the raw ceiling, and feedbackd's sender alone.
	ceilings := func() ceilingPoint {
		c := ceilingPoint{raw: e.ceiling("net/http client", netHTTP), sender: e.ceiling("feedbackd's sender alone", sender)}
		res.CeilingPerSec = max(res.CeilingPerSec, c.raw)
		res.SenderCeilingPerSec = max(res.SenderCeilingPerSec, c.sender)
		return c
	}

	// Warm up first (connections to the receiver, the group's fetch
	// sessions, feedbackd's caches), so that the measured rounds do not pay
	// for them.
	logf("warm-up: %d events, not measured", max(o.events/10, 1000))
	if _, err := e.throughput(max(o.events/10, 1000), false, false); err != nil {
		return res, err
	}
	// The machine is shared and its speed drifts by tens of percent from
	// minute to minute, so a ceiling measured once is a poor yardstick for
	// a throughput measured later: each throughput round runs between two
	// ceiling rounds and is compared with their mean, the ceiling's
	// estimate for the time in between.
	before := ceilings()
	rounds := func(n int, withBad bool) ([]round, phase, error) {
		var rs []round
		var total phase
		for i := range n {
			ph, err := e.throughput(o.events, withBad, i == 0 && !withBad)
			if err != nil {
				return nil, total, err
			}
			total.add(ph)
			after := ceilings()
			r := newRound(before, ph.rate, after)
			logf("round %d of %d%s: %.0f deliveries/s, raw ceiling %.0f/s before and %.0f/s after: ratio %.2f (%.2f of the sender alone)",
				i+1, n, map[bool]string{true: " with the " + o.scenario()}[withBad], r.DeliveriesPerSec, before.raw, after.raw, r.Ratio, r.SenderRatio)
			rs = append(rs, r)
			before = after
		}
		return rs, total, nil
	}
	m0 := e.daemon.memstats(e.http)
	rs, total, err := rounds(o.rounds, false)
	if err != nil {
		return res, err
	}
	m1 := e.daemon.memstats(e.http)
	res.Rounds = rs
	rate := median(column(rs, func(r round) float64 { return r.DeliveriesPerSec }))
	ratios := column(rs, func(r round) float64 { return r.Ratio })
	res.DeliveriesPerSec, res.Ratio, res.WorstRatio = rate, median(ratios), slices.Min(ratios)
	res.SenderRatio = median(column(rs, func(r round) float64 { return r.SenderRatio }))
	res.CPUPer1000 = total.cpu / float64(total.deliveries) * 1000
	res.OthersCPUPer1000 = map[string]float64{}
	for name, c := range total.others {
		res.OthersCPUPer1000[name] = c / float64(total.deliveries) * 1000
	}
	res.AllocsPerDelivery = (m1.mallocs - m0.mallocs) / float64(total.deliveries)
	res.BytesPerDelivery = (m1.bytes - m0.bytes) / float64(total.deliveries)
	if o.slowTenant || o.deadTenant {
		// As many rounds again with the bad tenant getting its share, timed
		// the same way: the other tenants' rate is compared with the
		// healthy one as a share of the ceiling, which the drift of the
		// machine's speed does not change.
		bad, _, err := rounds(o.rounds, true)
		if err != nil {
			return res, err
		}
		res.BadRounds = bad
		res.OthersPerSec = median(column(bad, func(r round) float64 { return r.DeliveriesPerSec }))
		res.OthersVsHealthy = median(column(bad, func(r round) float64 { return r.Ratio })) / res.Ratio
	}

	// Half the ceiling measured last, just before this phase, not the
	// best one: the machine's speed drifts, and half its best can be well
	// over half of what it does now.
	res.OfferedPerSec = before.raw / 2
	if res.P50MS, res.P95MS, res.P99MS, err = e.latency(res.OfferedPerSec); err != nil {
		return res, err
	}
	// Half the ceiling may be more than feedbackd sustains here, which
	// measures a growing queue: also measure at half feedbackd's own rate.
	res.SustainedPerSec = rate / 2
	if res.SustainedP50MS, res.SustainedP95MS, res.SustainedP99MS, err = e.latency(res.SustainedPerSec); err != nil {
		return res, err
	}
	res.PeakRSSMiB = e.daemon.peakRSS()
	res.FeedbackdCPUCores = e.daemon.cpu() / time.Since(e.daemon.started).Seconds()

	if o.backlog > 0 {
		if err := e.drainBacklog(&res); err != nil {
			return res, err
		}
	}
	return res, nil
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
	cmd := exec.Command(self, "receiver", "--latency", e.o.latency.String(), "--slow-after", "10s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("receiver did not start: %w", err)
	}
	e.receiver = strings.TrimSpace(line)
	e.others = append(e.others, proc{"receiver", cmd.Process.Pid})
	logf("receiver: %s (own process, pid %d, latency %s)", e.receiver, cmd.Process.Pid, e.o.latency)
	return nil
}

const adminToken = "feedbackbench-admin-token"

// daemonProc is a running feedbackd.
type daemonProc struct {
	cmd     *exec.Cmd
	api     string
	pprof   string // host:port of its profiles, if asked for
	started time.Time
	done    chan struct{}
}

func (e *env) startDaemon() (*daemonProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemonProc{api: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{})}
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
	)
	d.cmd.Stderr = os.Stderr
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
				logf("feedbackd: pid %d ready on %s", d.cmd.Process.Pid, d.api)
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

// cpu is the process's user+system CPU time so far, in seconds.
func (d *daemonProc) cpu() float64 { return procCPU(d.cmd.Process.Pid) }

// procCPU is a process's user+system CPU time so far, in seconds (0 if it
// cannot be read).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// memstats are the Go runtime's allocation counters of the process.
type memstats struct{ mallocs, bytes float64 }

// memstats reads go_memstats_mallocs_total and go_memstats_alloc_bytes_total
// from the daemon's /metrics (zero if it cannot).
func (d *daemonProc) memstats(c *http.Client) memstats {
	var m memstats
	resp, err := c.Get(d.api + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			m.mallocs, _ = strconv.ParseFloat(val, 64)
		case "go_memstats_alloc_bytes_total":
			m.bytes, _ = strconv.ParseFloat(val, 64)
		}
	}
	return m
}

// peakRSS is the process's VmHWM in MiB.
func (d *daemonProc) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// createTenants registers the configs through the admin API. Tenant 0 is
// the slow or dead one when a scenario asks for it.
func (e *env) createTenants() error {
	dead := ""
	if e.o.deadTenant {
		port, err := freePort() // nothing listens there
		if err != nil {
			return err
		}
		dead = fmt.Sprintf("http://127.0.0.1:%d/", port)
	}
	logf("tenants: creating %d webhook configs", e.o.tenants)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= e.o.tenants {
					return
				}
				url := fmt.Sprintf("http://%s/t/%d", e.receiver, i)
				switch {
				case i == 0 && e.o.slowTenant:
					url = fmt.Sprintf("http://%s/slow/0", e.receiver)
				case i == 0 && e.o.deadTenant:
					url = dead
				}
				body, _ := json.Marshal(map[string]any{
					"imsOrg": org(i), "sandbox": map[string]string{"id": "prod"}, "name": "bench " + org(i),
					"channels": []string{"email", "sms"}, "url": url,
				})
				req, _ := http.NewRequest("POST", e.daemon.api+"/v1/webhooks", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := e.http.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("create webhook %s: HTTP %d", org(i), resp.StatusCode)
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				if n := i + 1; n%1000 == 0 {
					logf("tenants: %d/%d", n, e.o.tenants)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func org(i int) string { return fmt.Sprintf("bench-org-%05d", i) }

var channels = []struct{ topic, channel, status string }{
	{"feedback.sent", "email", "sent"}, {"feedback.delivered", "email", "delivered"},
	{"feedback.bounce", "email", "bounce"}, {"feedback.error", "sms", "error"},
}

// payload is event n: about 700 bytes of JSON, tenant and topic chosen
// round-robin, its requestId carrying the produce time for latency.
func payload(n int) []byte { return eventFor(n, n%4, time.Now().UnixNano(), 0) }

// eventIDs numbers events over the whole run: each phase's events are new
// ones, never suppressed as already delivered by an earlier phase.
var eventIDs atomic.Int64

func eventFor(n, ch int, sentNS int64, tenant int) []byte {
	c := channels[ch]
	return fmt.Appendf(nil, `{"eventId":"bench-%d","requestId":"t%d","imsOrg":%q,"sandbox":{"id":"prod","name":"Production"},`+
		`"channel":%q,"eventType":"message.feedback","messageExecution":{"messageExecutionID":"MEID-%010d",`+
		`"messageType":"transactional","campaignID":"3c2c0c44-5d1b-4d6f-9d3f-0a3c1c1f7b2e","batchInstanceID":"7d0e1f3a-9b2c-4c55-8f1e-2b6a7d9c0e41",`+
		`"journeyVersionID":"b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e","journeyActionID":"a9b8c7d6-e5f4-4a3b-2c1d-0e9f8a7b6c5d"},`+
		`"messageDeliveryFeedback":{"feedbackStatus":{"value":%q},"offers":null,"retryCount":0,`+
		`"messageFailure":{"category":"none","type":"none","code":"none","reason":"benchmark event with a realistic size"}},`+
		`"identityMap":{"email":[{"id":"recipient-%d@example.com","primary":true}]}}`,
		eventIDs.Add(1), sentNS, org(tenant), c.channel, n, c.status, n)
}

// produce writes events [from, to) at full speed, tenant picked by pick.
func (e *env) produce(from, to int, pick func(n int) int) error {
	ctx := context.Background()
	var failed atomic.Value
	for n := from; n < to; n++ {
		ch := n % 4
		e.producer.Produce(ctx, &kgo.Record{Topic: channels[ch].topic, Key: []byte(strconv.Itoa(n)), Value: eventFor(n, ch, time.Now().UnixNano(), pick(n))},
			func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(err)
				}
			})
	}
	if err := e.producer.Flush(ctx); err != nil {
		return err
	}
	if err, _ := failed.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

func (e *env) stats() (stats, error) {
	var s stats
	resp, err := e.http.Get("http://" + e.receiver + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (e *env) reset() error {
	resp, err := e.http.Post("http://"+e.receiver+"/reset", "", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// waitFor polls the receiver until it counted want healthy deliveries.
func (e *env) waitFor(what string, want int64, d *daemonProc) (stats, error) {
	last, lastAt := int64(-1), time.Now()
	for {
		s, err := e.stats()
		if err != nil {
			return s, err
		}
		if s.Count >= want {
			return s, nil
		}
		if s.Count != last {
			last, lastAt = s.Count, time.Now()
		} else if time.Since(lastAt) > 2*time.Minute {
			return s, fmt.Errorf("%s: stuck at %d of %d deliveries for 2 minutes", what, s.Count, want)
		}
		select {
		case <-d.done:
			return s, fmt.Errorf("%s: feedbackd exited", what)
		case <-time.After(time.Second):
		}
		logf("%s: %d/%d delivered", what, s.Count, want)
	}
}

// ceiling is the receiver's rate over --duration with --concurrency
// goroutines each calling post in a loop (post reports success).
func (e *env) ceiling(what string, post func(g, n int) bool) float64 {
	var count atomic.Int64
	deadline := time.Now().Add(e.o.duration)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range e.o.concurrency {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				if post(g, n) {
					count.Add(1)
				}
			}
		})
	}
	wg.Wait()
	rate := float64(count.Load()) / time.Since(start).Seconds()
	_ = e.reset()
	logf("ceiling, %s: %.0f/s", what, rate)
	return rate
}

// netHTTPPost is the raw ceiling's request: a plain net/http client POSTs
// what feedbackd would send to tenant g%tenants: the same body size and the
// same headers (webhook-id, -timestamp, -signature of the same lengths, no
// Accept-Encoding), so that the receiver parses the same request.
func (e *env) netHTTPPost() (post func(g, n int) bool, closeIdle func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: e.o.concurrency, MaxConnsPerHost: e.o.concurrency, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := payload(0)
	headers := make([]http.Header, e.o.concurrency)
	urls := make([]string, e.o.concurrency)
	for g := range headers {
		urls[g] = fmt.Sprintf("http://%s/t/%d", e.receiver, g%e.o.tenants)
		headers[g] = http.Header{
			"Content-Type":      {"application/json"},
			"User-Agent":        {"feedbackd/bench"},
			"Webhook-Id":        {fmt.Sprintf("bench-%d", 1_000_000+g)},
			"Webhook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)},
			"Webhook-Signature": {"v1," + strings.Repeat("A", 43) + "="},
		}
	}
	return func(g, _ int) bool {
		req, err := http.NewRequest(http.MethodPost, urls[g], bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header = headers[g]
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, tr.CloseIdleConnections
}

// senderPost is the second ceiling's request: feedbackd's own sender
// (pkg/deliver: signing, its HTTP/1.1 transport) makes the attempt, as the
// pipeline would for tenant g%tenants, without Kafka, Redis or parsing.
func (e *env) senderPost() (post func(g, n int) bool, closeIdle func(), err error) {
	c := deliver.New(deliver.Options{
		Timeout: 30 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/bench",
		MaxIdleConnsPerHost: e.o.concurrency,
	})
	secret, err := signature.NewSecret()
	if err != nil {
		return nil, nil, err
	}
	targets := make([]*webhook.Target, e.o.tenants)
	for i := range targets {
		cfg := webhook.Config{URL: fmt.Sprintf("http://%s/t/%d", e.receiver, i)}
		if targets[i], err = webhook.NewTarget(&webhook.Stored{Config: cfg, Secrets: []webhook.Secret{{Value: secret}}}); err != nil {
			return nil, nil, err
		}
	}
	body := payload(0)
	ids := make([]string, e.o.concurrency)
	for g := range ids {
		ids[g] = "bench-" + strconv.Itoa(2_000_000+g)
	}
	ctx := context.Background()
	return func(g, _ int) bool {
		return c.Send(ctx, targets[g%len(targets)], ids[g], body).Verdict == deliver.Delivered
	}, c.Close, nil
}

// phase is what one throughput run measured.
type phase struct {
	rate       float64            // deliveries/s, first to last arrival
	deliveries int64              // counted by the receiver
	cpu        float64            // feedbackd's CPU seconds
	others     map[string]float64 // CPU seconds of what shares the machine
}

func (p *phase) add(q phase) {
	p.deliveries += q.deliveries
	p.cpu += q.cpu
	if p.others == nil {
		p.others = map[string]float64{}
	}
	for name, c := range q.others {
		p.others[name] += c
	}
}

// throughput produces n events and measures the healthy tenants' delivery
// rate, first to last arrival, and the CPU feedbackd and the others used.
// With withBad, tenant 0 (slow or dead) gets its share of events. With
// profile, a CPU profile of feedbackd is taken meanwhile (--pprof).
func (e *env) throughput(n int, withBad, profile bool) (phase, error) {
	if err := e.reset(); err != nil {
		return phase{}, err
	}
	pick := e.o.healthyTenant
	if withBad {
		pick = func(i int) int { return i % e.o.tenants }
	}
	want := int64(n)
	if withBad {
		want = 0
		for i := range n {
			if pick(i) != 0 {
				want++
			}
		}
	}
	what := "throughput"
	if withBad {
		what = "throughput with a " + strings.TrimSuffix(e.o.scenario(), "-tenant") + " tenant"
	}
	logf("%s: producing %d events over %d tenants", what, n, e.o.tenants)
	cpu0 := e.daemon.cpu()
	others0 := e.othersCPU()
	profiled := make(chan error, 1)
	if e.daemon.pprof != "" && profile {
		go func() { profiled <- e.profile(e.o.pprof, 5*time.Second) }()
	} else {
		profiled <- nil
	}
	if err := e.produce(0, n, pick); err != nil {
		return phase{}, err
	}
	s, err := e.waitFor(what, want, e.daemon)
	if perr := <-profiled; perr != nil {
		logf("pprof: %v", perr)
	}
	if err != nil {
		return phase{}, err
	}
	ph := phase{
		rate:       float64(s.Count-1) / (float64(s.Last-s.First) / 1e9),
		deliveries: s.Count,
		cpu:        e.daemon.cpu() - cpu0,
		others:     map[string]float64{},
	}
	for name, c := range e.othersCPU() {
		ph.others[name] = c - others0[name]
	}
	logf("%s: %.0f deliveries/s", what, ph.rate)
	return ph, nil
}

// proc is a process whose CPU time the bench reads.
type proc struct {
	name string
	pid  int
}

func (e *env) othersCPU() map[string]float64 {
	m := map[string]float64{}
	for _, p := range e.others {
		m[p.name] = procCPU(p.pid)
	}
	return m
}

// profile saves a CPU profile of feedbackd taken over d.
func (e *env) profile(file string, d time.Duration) error {
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.daemon.pprof, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	logf("pprof: CPU profile of feedbackd in %s (go tool pprof -top %s %s)", file, e.o.feedbackd, file)
	return f.Close()
}

// healthyTenant is the tenant of event n among the healthy ones: all of
// them, or all but tenant 0 when it is the slow or dead one.
func (o options) healthyTenant(n int) int {
	if o.slowTenant || o.deadTenant {
		return 1 + n%(o.tenants-1)
	}
	return n % o.tenants
}

func (o options) scenario() string {
	switch {
	case o.slowTenant:
		return "slow-tenant"
	case o.deadTenant:
		return "dead-tenant"
	}
	return "healthy"
}

// latency offers events at a fixed rate for the phase's duration and
// reads the receiver's produce-to-arrival percentiles.
// latency offers rate events/s for --duration and returns the p50, p95
// and p99 from produce to arrival, in milliseconds.
func (e *env) latency(rate float64) (p50, p95, p99 float64, err error) {
	if err := e.reset(); err != nil {
		return 0, 0, 0, err
	}
	logf("latency: offering %.0f events/s for %s", rate, e.o.duration)
	ctx := context.Background()
	const tick = 10 * time.Millisecond
	perTick := rate * tick.Seconds()
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	sent, owed := 0, 0.0
	for time.Since(start) < e.o.duration {
		<-t.C
		owed += perTick
		for ; owed >= 1; owed-- {
			ch := sent % 4
			e.producer.Produce(ctx, &kgo.Record{Topic: channels[ch].topic, Value: eventFor(sent, ch, time.Now().UnixNano(), e.o.healthyTenant(sent))}, nil)
			sent++
		}
	}
	if err := e.producer.Flush(ctx); err != nil {
		return 0, 0, 0, err
	}
	s, err := e.waitFor("latency", int64(sent), e.daemon)
	if err != nil {
		return 0, 0, 0, err
	}
	p50, p95, p99 = float64(s.P50)/1e6, float64(s.P95)/1e6, float64(s.P99)/1e6
	logf("latency: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms over %d deliveries", p50, p95, p99, s.Sample)
	return p50, p95, p99, nil
}

// drainBacklog stops feedbackd, produces the backlog, starts a fresh
// feedbackd and measures its rate and peak RSS while it drains.
func (e *env) drainBacklog(res *result) error {
	logf("backlog: stopping feedbackd, producing %d events", e.o.backlog)
	e.daemon.stop()
	if err := e.reset(); err != nil {
		return err
	}
	for from := 0; from < e.o.backlog; from += 100_000 {
		to := min(from+100_000, e.o.backlog)
		if err := e.produce(from, to, e.o.healthyTenant); err != nil {
			return err
		}
		logf("backlog: %d/%d produced", to, e.o.backlog)
	}
	d, err := e.startDaemon()
	if err != nil {
		return err
	}
	e.daemon = d
	var peak float64
	stop := make(chan struct{})
	go func() { // VmHWM is the peak already; sample in case the process exits
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				peak = max(peak, d.peakRSS())
			}
		}
	}()
	s, err := e.waitFor("backlog", int64(e.o.backlog), d)
	close(stop)
	if err != nil {
		return err
	}
	res.BacklogPerSec = float64(s.Count-1) / (float64(s.Last-s.First) / 1e9)
	res.BacklogPeakRSSMiB = max(peak, d.peakRSS())
	logf("backlog: %.0f deliveries/s, peak RSS %.0f MiB", res.BacklogPerSec, res.BacklogPeakRSSMiB)
	return nil
}

func printTable(r result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "machine\t%s\n", r.Machine)
	fmt.Fprintf(w, "scenario\t%s, %d tenants, receiver latency %gms, %d events, Redis %s\n", r.Scenario, r.Tenants, r.ReceiverLatencyMS, r.Events, r.Redis)
	for i, rd := range r.Rounds {
		fmt.Fprintf(w, "round %d\t%.0f deliveries/s; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f; sender alone %.0f/s, %.0f/s: %.2f\n",
			i+1, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio, rd.SenderBefore, rd.SenderAfter, rd.SenderRatio)
	}
	fmt.Fprintf(w, "raw HTTP ceiling (net/http client)\t%.0f/s, best round\n", r.CeilingPerSec)
	fmt.Fprintf(w, "feedbackd's sender alone, no Kafka\t%.0f/s, best round\n", r.SenderCeilingPerSec)
	fmt.Fprintf(w, "feedbackd end to end\t%.0f deliveries/s, median round\n", r.DeliveriesPerSec)
	fmt.Fprintf(w, "ratio to the raw ceiling\t%.2f median, %.2f worst round\n", r.Ratio, r.WorstRatio)
	fmt.Fprintf(w, "ratio to feedbackd's sender alone\t%.2f median\n", r.SenderRatio)
	for i, rd := range r.BadRounds {
		fmt.Fprintf(w, "round %d with the %s\t%.0f deliveries/s to the others; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f\n", i+1, r.Scenario, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio)
	}
	if r.OthersPerSec > 0 {
		fmt.Fprintf(w, "other tenants with the %s\t%.0f deliveries/s, median round; %.2f x healthy (median ratios)\n", r.Scenario, r.OthersPerSec, r.OthersVsHealthy)
	}
	fmt.Fprintf(w, "latency at %.0f/s (p50/p95/p99)\t%.1f / %.1f / %.1f ms\n", r.OfferedPerSec, r.P50MS, r.P95MS, r.P99MS)
	fmt.Fprintf(w, "latency at %.0f/s, half feedbackd's rate\t%.1f / %.1f / %.1f ms\n", r.SustainedPerSec, r.SustainedP50MS, r.SustainedP95MS, r.SustainedP99MS)
	fmt.Fprintf(w, "CPU per 1,000 deliveries\t%.3f s\n", r.CPUPer1000)
	if len(r.OthersCPUPer1000) > 0 {
		names := slices.Sorted(maps.Keys(r.OthersCPUPer1000))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %.3f s", n, r.OthersCPUPer1000[n])
		}
		fmt.Fprintf(w, "  sharing the machine, per 1,000\t%s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "allocations per delivery\t%.0f (%.0f bytes), whole process\n", r.AllocsPerDelivery, r.BytesPerDelivery)
	fmt.Fprintf(w, "peak RSS\t%.0f MiB\n", r.PeakRSSMiB)
	if r.Backlog > 0 {
		fmt.Fprintf(w, "backlog of %d\t%.0f deliveries/s, peak RSS %.0f MiB\n", r.Backlog, r.BacklogPerSec, r.BacklogPeakRSSMiB)
	}
	w.Flush()
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores %s, %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
