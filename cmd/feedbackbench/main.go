// Command feedbackbench measures feedbackd end to end on this machine: it
// starts a broker (kfake, or --brokers), redis-server, a receiver in its own
// process and feedbackd as a separate process, registers the tenants'
// configs, and prints the raw HTTP ceiling, feedbackd's deliveries/s and
// their ratio, end-to-end latency at half the ceiling, CPU seconds per 1,000
// deliveries and feedbackd's peak RSS. `make bench` runs it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
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
               measured rate; each over --duration after a second at the
               rate that is not counted (feedbackd opens its connections
               again: the ceiling round before closed them), with the
               garbage collections feedbackd ran meanwhile
  allocations  feedbackd's Go allocations (count, bytes) per delivery,
               from its go_memstats_* metrics over the throughput phase
  cpu          CPU seconds per 1,000 deliveries of feedbackd, and of the
               receiver, redis-server and this process (broker, producer);
               and feedbackd's with every slot in use and no dial: over
               the intervals between samples taken every second, from a
               round's --concurrency-th delivery (each slot's first
               dials: a round starts without connections) to its last
               --concurrency, in which feedbackd dialled nothing, with
               the share of deliveries they hold
  connections  feedbackd's dials and evictions per 1,000 deliveries, from
               its feedbackd_delivery_dials_total and
               feedbackd_delivery_connections_evicted_total
  peak RSS     feedbackd's VmHWM, with its GOMEMLIMIT (--gomemlimit); and,
               sampled every second over the throughput rounds, its heap in
               use and goroutine stacks when they were largest, and the
               largest RSS sampled over the most deliveries in flight seen:
               memory per delivery in flight (from 1,000 in flight)
With --outcomes both (the default), the throughput rounds alternate between
feedbackd with outcomes.enabled false and true (FEEDBACKD_OUTCOMES_ENABLED),
restarted and warmed up before each round, against the same ceilings; both
rows are printed with their ratio (throughput, CPU per delivery), and the
phases after them run with outcomes on.
With --slow-tenant or --dead-tenant, each healthy round (with outcomes on,
after --outcomes both) is followed by one that gives one tenant's endpoint
(slow: answers after 10 s; dead: refuses connections) its share of events;
each such round's ratio to the ceiling (the other tenants') is divided by
that of the healthy round just before it, and the median and worst of these
pairs are reported. Between those rounds that endpoint answers at once, so
that its retries drain and the healthy rounds stay healthy.
With --tls, the receiver serves HTTPS (HTTP/1.1) with a certificate from an
ECDSA P-256 CA this run makes; the ceiling clients trust it, and feedbackd is
given it with SSL_CERT_FILE (its system roots plus this CA). TLS handshakes
per 1,000 deliveries are reported, and how many resumed a session.
With --hosts N, the receiver listens on N loopback addresses (127.0.0.2 and
on) and the tenants' URLs go to them round robin, so that connection pools
and TLS sessions are per host as with real tenants' endpoints.
Every ceiling round uses a new client whose connections are closed after it,
and the receiver closes the idle connections it holds (feedbackd's among
them) before each ceiling and throughput round, so that connections do not
pile up across phases. The open-file limit (RLIMIT_NOFILE) is raised to the
hard limit (beyond it when privileged), for this process and the ones it
starts, and reported with what --concurrency needs. So is the range of
ephemeral ports, with what a round takes of it per host: above half of it,
connect() slows every dial (the ceilings most), and the line says how many
--hosts to spread over.
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
	outcomes     string // on, off or both
	tls          bool   // the receiver serves HTTPS
	hosts        int    // endpoint hosts (loopback addresses)
	gomemlimit   string // feedbackd's GOMEMLIMIT; "" leaves the environment's
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
	fs.StringVar(&o.outcomes, "outcomes", "both", "run feedbackd with outcomes (the outcomes topic) on, off, or both: rounds alternating off and on, compared")
	fs.BoolVar(&o.tls, "tls", false, "the receiver serves HTTPS with a CA this run makes; the ceilings use TLS too, feedbackd trusts the CA through SSL_CERT_FILE")
	fs.IntVar(&o.hosts, "hosts", 1, "distinct endpoint hosts: the receiver listens on this many loopback addresses (127.0.0.2 and on when more than 1), the tenants' URLs go to them round robin")
	fs.StringVar(&o.gomemlimit, "gomemlimit", "", "run feedbackd with this GOMEMLIMIT (Go's soft memory limit, e.g. 448MiB: what the Kubernetes manifest sets from the container's memory limit); default: this process's environment's, if any")
	fs.StringVar(&o.pprof, "pprof", "", "write a 5 s CPU profile of feedbackd during the first throughput round, from the end of the first second with every slot in use and no dial (see cpu above), to this file (with --outcomes both, the first with outcomes on), and heap and goroutine profiles taken halfway through it to FILE.heap and FILE.goroutine")
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
	if o.hosts < 1 || o.hosts > maxHosts {
		fmt.Fprintf(os.Stderr, "feedbackbench: --hosts must be between 1 and %d\n", maxHosts)
		return 2
	}
	if o.outcomes != "on" && o.outcomes != "off" && o.outcomes != "both" {
		fmt.Fprintln(os.Stderr, "feedbackbench: --outcomes must be on, off or both")
		return 2
	}
	if o.gomemlimit != "" && !validMemLimit(o.gomemlimit) {
		fmt.Fprintf(os.Stderr, "feedbackbench: --gomemlimit %q is not a size such as 448MiB (B, KiB, MiB, GiB, TiB) or off\n", o.gomemlimit)
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

// validMemLimit reports whether s is a GOMEMLIMIT the Go runtime takes:
// a whole number of bytes with an optional B, KiB, MiB, GiB or TiB, or off.
func validMemLimit(s string) bool {
	if s == "off" {
		return true
	}
	shift := 0
	for i, unit := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, unit); ok && (unit != "B" || !strings.HasSuffix(s, "iB")) {
			s, shift = n, 10*i
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 63)
	return err == nil && n <= math.MaxInt64>>shift
}
