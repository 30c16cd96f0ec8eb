package chaos

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/feedbackd/feedbackd/test/testenv"
)

const (
	adminToken = "chaos-admin-token-0123456789"
	// secretsKey encrypts secrets at rest (32 bytes, base64).
	secretsKey = "Y2hhb3Mtc2VjcmV0cy1rZXktMzItYnl0ZXMtbG9uZyE="
	group      = "feedbackd"
	// sessionTimeout is feedbackd's kafka.session_timeout: how long a
	// killed instance's partitions wait before they move.
	sessionTimeout = 10 * time.Second
)

// env is one scenario's world: its own broker (persistent, in this
// process), redis-server, receiver and feedbackd processes. Everything is
// torn down with the test.
type env struct {
	t      *testing.T
	name   string
	bin    string
	logDir string
	kafka  *testenv.Kafka
	seeds  []string
	redis  *testenv.Redis
	recv   *receiver
	http   *http.Client

	mu      sync.Mutex
	daemons []*daemon
	started int
	kills   []time.Time // when an instance was killed with SIGKILL
	env     []string    // extra FEEDBACKD_* settings of every instance
}

// envOptions adjust a scenario's world before anything starts.
type envOptions struct {
	failRate  float64     // share of attempts the receiver answers 500
	kafkaOpts []kfake.Opt // e.g. a listener behind a proxy
	daemonEnv []string    // FEEDBACKD_* settings of every instance
}

func newEnv(t *testing.T, name, bin string, o envOptions) *env {
	t.Helper()
	e := &env{t: t, name: name, bin: bin, env: o.daemonEnv, http: &http.Client{Timeout: 30 * time.Second}}
	e.logDir = t.TempDir()
	if d := os.Getenv("CHAOS_LOG_DIR"); d != "" {
		e.logDir = filepath.Join(d, time.Now().Format("20060102-150405")+"-"+name)
		if err := os.MkdirAll(e.logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := append([]kfake.Opt{kfake.DataDir(filepath.Join(t.TempDir(), "kafka"))}, o.kafkaOpts...)
	e.kafka = testenv.StartKafka(t, opts...)
	e.seeds = e.kafka.Seeds
	e.redis = testenv.StartRedis(t)
	e.recv = startReceiver(t, o.failRate)
	t.Cleanup(func() {
		e.stopAll()
		if t.Failed() {
			e.dumpLogs()
		}
	})
	return e
}

// daemon is one feedbackd process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	api  string
	log  string
	done chan struct{}
}

// startDaemon starts one more feedbackd process in the scenario's group,
// with extra FEEDBACKD_* settings, and waits until it is ready.
func (e *env) startDaemon(extra ...string) *daemon {
	e.t.Helper()
	e.mu.Lock()
	e.started++
	n := e.started
	e.mu.Unlock()
	addr := freeAddr(e.t)
	d := &daemon{
		name: fmt.Sprintf("feedbackd-%d", n),
		api:  "http://" + addr,
		log:  filepath.Join(e.logDir, fmt.Sprintf("feedbackd-%d.log", n)),
		done: make(chan struct{}),
	}
	logf, err := os.Create(d.log)
	if err != nil {
		e.t.Fatal(err)
	}
	d.cmd = exec.Command(e.bin, "--log-format", "text")
	d.cmd.Dir = e.logDir // no config/feedbackd.yaml there: the environment is the whole configuration
	d.cmd.Env = append(withoutFeedbackdEnv(os.Environ()),
		"FEEDBACKD_KAFKA_BROKERS="+strings.Join(e.seeds, ","),
		"FEEDBACKD_KAFKA_GROUP="+group,
		"FEEDBACKD_REDIS_ADDR="+e.redis.Addr,
		"FEEDBACKD_HTTP_ADDR="+addr,
		"FEEDBACKD_ADMIN_TOKEN="+adminToken,
		"FEEDBACKD_SECRETS_KEYS="+secretsKey,
		"FEEDBACKD_DELIVERY_ALLOW_HTTP=true",
		"FEEDBACKD_DELIVERY_ALLOW_PRIVATE_NETWORKS=true",
		// Short, so that a 4th failure dead-letters the event within the run.
		"FEEDBACKD_RETRY_SCHEDULE=1s,2s,3s",
		"FEEDBACKD_KAFKA_SESSION_TIMEOUT="+sessionTimeout.String(),
		// Breakers would open on runs of random 500s and defer events past
		// the short schedule (dead-lettering them as circuit_open): that is
		// their design, not what this suite reconciles.
		"FEEDBACKD_DELIVERY_BREAKER_THRESHOLD=1000000000",
		// The receiver is in this process and fast; no endpoint should be
		// "busy" when an instance takes a third of the limit.
		"FEEDBACKD_DELIVERY_ENDPOINT_CONCURRENCY=4096",
		"FEEDBACKD_SHUTDOWN_TIMEOUT=20s",
		"FEEDBACKD_LOG_LEVEL="+cmp.Or(os.Getenv("CHAOS_LOG_LEVEL"), "warn"),
	)
	d.cmd.Env = append(append(d.cmd.Env, e.env...), extra...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		e.t.Fatalf("start %s: %v", e.bin, err)
	}
	go func() { _ = d.cmd.Wait(); logf.Close(); close(d.done) }()
	e.mu.Lock()
	e.daemons = append(e.daemons, d)
	e.mu.Unlock()
	e.waitReady(d)
	e.t.Logf("%s: %s pid %d ready on %s (log %s)", e.name, d.name, d.cmd.Process.Pid, d.api, d.log)
	return d
}

func (e *env) waitReady(d *daemon) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			e.t.Fatalf("%s exited at start-up: %s\n%s", d.name, d.cmd.ProcessState, tail(d.log, 30))
		default:
		}
		if resp, err := e.http.Get(d.api + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("%s not ready after 3 minutes\n%s", d.name, tail(d.log, 30))
}

// kill stops the process with SIGKILL: no drain, no commit, no leave.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// kill stops d with SIGKILL and notes when.
func (e *env) kill(d *daemon) {
	e.mu.Lock()
	e.kills = append(e.kills, time.Now())
	e.mu.Unlock()
	d.kill()
}

// stop asks the process to drain and leave (SIGTERM), killing it if it has
// not exited after a minute; it reports whether it exited by itself.
func (d *daemon) stop() bool {
	select {
	case <-d.done:
		return true
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return true
	case <-time.After(time.Minute):
		d.kill()
		return false
	}
}

func (e *env) stopAll() {
	e.mu.Lock()
	ds := append([]*daemon(nil), e.daemons...)
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() {
			if !d.stop() {
				e.t.Errorf("%s did not stop within a minute of SIGTERM (killed)", d.name)
			}
		})
	}
	wg.Wait()
}

// dumpLogs shows where each process's log is and its last lines.
func (e *env) dumpLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.daemons {
		e.t.Logf("%s log %s (set CHAOS_LOG_DIR to keep it), last lines:\n%s", d.name, d.log, tail(d.log, 40))
	}
}

// tenant is one webhook config and its endpoint on the receiver.
type tenant struct {
	org    string
	path   string
	secret string
}

func tenantOrg(i int) string { return fmt.Sprintf("chaos-org-%02d", i) }

// ghostOrg has no webhook config: its events are skipped.
const ghostOrg = "chaos-ghost"

// createTenants registers n webhook configs through d's admin API, each
// with its own endpoint URL on the receiver, and tells the receiver their
// signing secrets.
func (e *env) createTenants(d *daemon, n int) {
	e.t.Helper()
	for i := range n {
		tn := tenant{org: tenantOrg(i), path: fmt.Sprintf("/t/%d", i)}
		body, _ := json.Marshal(map[string]any{
			"imsOrg": tn.org, "sandbox": map[string]string{"id": "prod", "name": "Production"},
			"name": "chaos " + tn.org, "channels": []string{"email", "sms"},
			"url": "http://" + e.recv.addr + tn.path,
		})
		req, _ := http.NewRequest(http.MethodPost, d.api+"/v1/webhooks", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.http.Do(req)
		if err != nil {
			e.t.Fatalf("create webhook %s: %v", tn.org, err)
		}
		var out struct {
			SigningSecret string `json:"signingSecret"`
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &out) != nil || out.SigningSecret == "" {
			e.t.Fatalf("create webhook %s: HTTP %d %s", tn.org, resp.StatusCode, raw)
		}
		tn.secret = out.SigningSecret
		e.recv.addTenant(e.t, tn)
	}
}

// withoutFeedbackdEnv drops FEEDBACKD_* variables of the caller's
// environment, so the scenario's settings are the only ones.
func withoutFeedbackdEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FEEDBACKD_") {
			out = append(out, kv)
		}
	}
	return out
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// contextFor is a context that ends with the test.
func contextFor(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// metric sums the samples of a counter or gauge over the instances still
// running (those killed took theirs with them), read from /metrics.
func (e *env) metric(name string) float64 {
	e.mu.Lock()
	ds := append([]*daemon(nil), e.daemons...)
	e.mu.Unlock()
	var sum float64
	for _, d := range ds {
		select {
		case <-d.done:
			continue
		default:
		}
		resp, err := e.http.Get(d.api + "/metrics")
		if err != nil {
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(raw), "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
