package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/test/testenv"
)

// TestReadmeRealConfigWalkthrough does what the README's "Run it against
// your Kafka and Redis" section tells a new user to do, with the built
// binaries: feedbackd --config config/feedbackd.yaml with environment
// overrides, a webhook created over HTTP, feedbackctl receive verifying
// signatures, and an event produced with kcat.
func TestReadmeRealConfigWalkthrough(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("FEEDBACKD_REQUIRE_TOOLS") != "" {
			t.Fatal("kcat not found; `make test` installs it (apt-get install kcat)")
		}
		t.Skip("kcat not installed; run `make test` to install it")
	}
	bin := binaries(t)
	redis := testenv.StartRedis(t)
	brokerAddr := freeAddr(t)
	httpAddr := freeAddr(t)
	recvAddr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	broker := startProc(t, ctx, "devbroker", exec.Command(filepath.Join(bin, "devbroker"), "--addr", brokerAddr))
	broker.waitFor(t, "listening on", 10*time.Second)

	fd := exec.Command(filepath.Join(bin, "feedbackd"), "--config", "../../config/feedbackd.yaml", "--log-format", "text")
	fd.Env = append(os.Environ(),
		"FEEDBACKD_ADMIN_TOKEN="+token,
		"FEEDBACKD_SECRETS_KEYS="+secretsKey,
		"FEEDBACKD_KAFKA_BROKERS="+brokerAddr,
		"FEEDBACKD_REDIS_ADDR="+redis.Addr,
		"FEEDBACKD_HTTP_ADDR="+httpAddr,
		"FEEDBACKD_DELIVERY_ALLOW_HTTP=true",
		"FEEDBACKD_DELIVERY_ALLOW_PRIVATE_NETWORKS=true",
	)
	feedbackd := startProc(t, ctx, "feedbackd", fd)
	feedbackd.waitFor(t, "webhook configs loaded", 30*time.Second)

	// curl -H 'Authorization: Bearer ...' -d @config/examples/webhook.json .../v1/webhooks
	body, err := os.ReadFile("../../config/examples/webhook.json")
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.Replace(body, []byte("127.0.0.1:9000"), []byte(recvAddr), 1)
	req, _ := http.NewRequest("POST", adminProxy(t, "http://"+httpAddr)+"/v1/webhooks", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var created struct {
		SigningSecret string `json:"signingSecret"`
	}
	if resp.StatusCode != 201 || json.Unmarshal(answer, &created) != nil {
		t.Fatalf("create webhook: %d %s", resp.StatusCode, answer)
	}

	rc := exec.Command(filepath.Join(bin, "feedbackctl"), "receive", "--addr", recvAddr)
	rc.Env = append(os.Environ(), "FEEDBACKCTL_SECRET="+created.SigningSecret)
	receiver := startProc(t, ctx, "feedbackctl receive", rc)
	receiver.waitFor(t, "receiving webhooks", 10*time.Second)

	// kcat -P -b ... -t feedback.bounce -k myImsOrg/my-sandbox config/examples/event.json
	out, err := exec.CommandContext(ctx, kcat, "-P", "-b", brokerAddr, "-t", "feedback.bounce",
		"-k", "myImsOrg/my-sandbox", "../../config/examples/event.json").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	line := receiver.waitFor(t, "signature verified", 30*time.Second)
	if !strings.Contains(line, "webhook_id=evt-0001") {
		t.Fatalf("receiver line: %s", line)
	}
	feedbackd.waitFor(t, "msg=delivered", 10*time.Second)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process whose combined output is kept and scanned.
type proc struct {
	name  string
	mu    sync.Mutex
	lines []string
	seen  chan struct{}
}

func startProc(t *testing.T, ctx context.Context, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, seen: make(chan struct{}, 1)}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		w.Close()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("--- output of %s:\n%s", name, strings.Join(p.lines, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

// waitFor returns the first output line containing s.
func (p *proc) waitFor(t *testing.T, s string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s did not print %q within %s", p.name, s, d)
			return ""
		}
	}
}

// The docker-compose stack cannot start here (no Docker engine), but its
// setup script can run against a real feedbackd: it must register the demo
// webhook and leave a usable secret for the receiver, also when run twice.
func TestComposeSetupScript(t *testing.T) {
	requireTool(t, "curl", "curl")
	h := start(t, nil)
	secretFile := filepath.Join(t.TempDir(), "secret")
	for run := 1; run <= 2; run++ {
		cmd := exec.Command("sh", "../../config/docker/setup-demo.sh")
		cmd.Env = append(os.Environ(), "FEEDBACKD_API="+h.api, "SECRET_FILE="+secretFile, "FEEDBACKD_ADMIN_TOKEN="+token)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		secret, _ := os.ReadFile(secretFile)
		if !strings.HasPrefix(string(secret), "whsec_") {
			t.Fatalf("run %d: secret file holds %q", run, secret)
		}
		var got map[string]any
		if code := h.call("GET", "/v1/webhooks/myImsOrg/my-sandbox", nil, &got); code != 200 || got["url"] != "http://receiver:9000/webhook" {
			t.Fatalf("run %d: webhook %d %v", run, code, got)
		}
	}
}
