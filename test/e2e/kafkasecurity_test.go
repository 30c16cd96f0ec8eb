package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/pkg/replay"
	"github.com/feedbackd/feedbackd/test/testenv"
)

const (
	kafkaPassword = "kafka-Pa55word-that-must-never-show"
	adminPassword = "kafka-admin-pw"
)

// readmeACLs are the ACLs of README's "Kafka ACLs" table for the default
// topics, group feedbackd and kafka.create_topics true: feedbackd must run
// with exactly these.
func readmeACLs() []kfake.ACL {
	type (
		rt = kmsg.ACLResourceType
		op = kmsg.ACLOperation
	)
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	topic, group, txn, cluster := kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeTransactionalId, kmsg.ACLResourceTypeCluster
	read, write, create := kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate
	var acls []kfake.ACL
	add := func(res rt, name string, pattern kmsg.ACLResourcePatternType, ops ...op) {
		for _, o := range ops {
			acls = append(acls, kfake.ACL{Resource: res, Name: name, Pattern: pattern, Operation: o, Allow: true})
		}
	}
	for _, in := range []string{"feedback.sent", "feedback.delivered", "feedback.bounce", "feedback.error"} {
		add(topic, in, lit, read, write) // write: replay jobs re-inject into them
	}
	add(topic, "feedback.retry.", pre, read, write)
	add(topic, "feedback.configs", lit, read, write)
	add(topic, "feedback.dlq", lit, read, write)
	add(topic, "feedback.dlq.replayed", lit, read, write)
	add(topic, "feedback.outcomes", lit, write)
	add(group, "feedbackd", lit, read)
	add(group, "feedbackd-replay-", pre, read)
	add(txn, "feedbackd-replay-", pre, write)
	add(cluster, "kafka-cluster", lit, create) // only with kafka.create_topics
	return acls
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// TestKafkaSCRAMOverTLSWithREADMEACLs: feedbackd holding only the README's
// ACLs over SCRAM-SHA-512 and TLS delivers, retries, dead-letters and
// replays; feedbackctl reads the dead letters with the same credentials;
// the password shows nowhere.
func TestKafkaSCRAMOverTLSWithREADMEACLs(t *testing.T) {
	pki := testenv.NewPKI(t)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(kafkaPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	adminSCRAM := scram.Auth{User: "admin", Pass: adminPassword}.AsSha512Mechanism()
	h := start(t, func(c *daemon.Config) {
		c.Kafka.TLS = kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile}
		c.Kafka.SASL = kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA512, Username: "feedbackd", PasswordFile: pwFile}
	}, withLogs(&logs),
		withKafka(kfake.TLS(pki.ServerTLS(t, false)), kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser(kafkaconn.ScramSHA512, "admin", adminPassword),
			kfake.User(kafkaconn.ScramSHA512, "feedbackd", kafkaPassword, readmeACLs()...)),
		withKafkaClient([]string{"FEEDBACKCTL_KAFKA_TLS_ENABLED=true", "FEEDBACKCTL_KAFKA_TLS_CA_FILE=" + pki.CAFile,
			"FEEDBACKCTL_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "FEEDBACKCTL_KAFKA_SASL_USERNAME=feedbackd",
			"FEEDBACKCTL_KAFKA_SASL_PASSWORD=" + kafkaPassword},
			kgo.DialTLSConfig(&tls.Config{RootCAs: caPool(t, pki.CAFile)}), kgo.SASL(adminSCRAM)))

	var accept atomic.Bool
	rc := newReceiver(t, func(n int, d delivery) int {
		switch id := d.header.Get("webhook-id"); {
		case id == "evt-retry" && n == 1:
			return 503 // through a retry tier
		case id == "evt-rejected" && !accept.Load():
			return 400
		}
		return 200
	})
	secret := h.createWebhook(webhookConfig("orgS", "sb", rc.URL))
	h.produceEvent(newEvent("evt-retry", "orgS", "sb", "email", "bounce"))
	h.produceEvent(newEvent("evt-rejected", "orgS", "sb", "email", "bounce"))
	h.produce("feedback.sent", []byte(`{"not": "an event"`))
	h.eventually("evt-retry delivered on its second attempt", 30*time.Second, func() bool {
		n := 0
		for _, d := range rc.deliveries() {
			if d.header.Get("webhook-id") == "evt-retry" {
				verify(t, secret, d)
				n++
			}
		}
		return n == 2
	})
	recs := h.dlq(2)
	reasons := map[string]bool{}
	for _, r := range recs {
		reasons[header.Get(r.Headers, "dlq-reason")] = true
	}
	if !reasons["invalid_event"] || !reasons["rejected"] {
		t.Fatalf("dead letters: %v", reasons)
	}

	out, code := h.ctl("dlq", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, "evt-rejected") || !strings.Contains(out, "invalid_event") {
		t.Fatalf("feedbackctl dlq list (exit %d): %s", code, out)
	}

	accept.Store(true)
	var p replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"reason": "rejected"}, &p); code != 202 {
		t.Fatalf("start replay: %d %+v", code, p)
	}
	h.eventually("replay done", 30*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays/"+p.ID, nil, &p)
		return p.State == replay.StateDone
	})
	if p.Replayed != 1 {
		t.Fatalf("replay: %+v", p)
	}
	h.eventually("evt-rejected delivered after the replay", 30*time.Second, func() bool {
		rc.mu.Lock()
		n := rc.counts["evt-rejected"]
		rc.mu.Unlock()
		return n >= 2 && h.metric("feedbackd_deliveries_total", map[string]string{"result": "delivered"}) == 2
	})

	// The password is in no log line, /readyz or /metrics answer.
	for _, path := range []string{"/readyz", "/metrics"} {
		resp, err := http.Get(h.api + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), kafkaPassword) {
			t.Errorf("%s shows the Kafka password", path)
		}
	}
	h.stopDaemon()
	if strings.Contains(logs.String(), kafkaPassword) || strings.Contains(out, kafkaPassword) {
		t.Error("the Kafka password is in the logs or feedbackctl's output")
	}
}

// runOnce runs feedbackd with cfg until it fails or d passes and returns
// its error (nil after d).
func runOnce(t *testing.T, cfg daemon.Config, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return daemon.Run(ctx, cfg, daemon.Options{Version: "e2e", Registry: prometheus.NewRegistry()})
}

func secureConfig(t *testing.T, seeds []string, caFile, user, pass string) daemon.Config {
	cfg := daemon.Defaults()
	cfg.Kafka.Brokers = seeds
	cfg.Kafka.Partitions = 1
	cfg.Kafka.TLS = kafkaconn.TLS{Enabled: true, CAFile: caFile}
	cfg.Kafka.SASL = kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA512, Username: user, Password: pass}
	cfg.Redis.Addr = testenv.StartRedis(t).URL
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Admin.Token = token
	cfg.Secrets.Keys = []string{secretsKey}
	return cfg
}

// TestKafkaStartupFailsWithOneLine: a wrong password and a missing ACL stop
// start-up at once with one line naming Kafka and the cause.
func TestKafkaStartupFailsWithOneLine(t *testing.T) {
	pki := testenv.NewPKI(t)
	noCreate := readmeACLs()
	noCreate = noCreate[:len(noCreate)-1] // without Create on the cluster
	without := func(drop func(kfake.ACL) bool) []kfake.ACL {
		var out []kfake.ACL
		for _, a := range readmeACLs() {
			if !drop(a) {
				out = append(out, a)
			}
		}
		return out
	}
	k := testenv.StartKafka(t, kfake.TLS(pki.ServerTLS(t, false)), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(kafkaconn.ScramSHA512, "admin", adminPassword),
		kfake.User(kafkaconn.ScramSHA512, "feedbackd", kafkaPassword, noCreate...),
		kfake.User(kafkaconn.ScramSHA512, "full", kafkaPassword, readmeACLs()...),
		kfake.User(kafkaconn.ScramSHA512, "nogroup", kafkaPassword, without(func(a kfake.ACL) bool { return a.Resource == kmsg.ACLResourceTypeGroup && a.Name == "feedbackd" })...),
		kfake.User(kafkaconn.ScramSHA512, "nodlqwrite", kafkaPassword, without(func(a kfake.ACL) bool { return a.Name == "feedback.dlq" && a.Operation == kmsg.ACLOperationWrite })...))
	// "full" creates the topics first, so that the others only lack their ACL.
	if err := runOnce(t, secureConfig(t, k.Seeds, pki.CAFile, "full", kafkaPassword), 3*time.Second); err != nil {
		t.Fatalf("with every README ACL: %v", err)
	}
	for _, tc := range []struct {
		name, user, pass, want string
	}{
		{"wrong password", "feedbackd", "not-" + kafkaPassword, "kafka: SASL authentication failed (SCRAM-SHA-512, user feedbackd)"},
		{"no create", "feedbackd", kafkaPassword, "kafka: not authorized (TOPIC_AUTHORIZATION_FAILED, User:feedbackd): create topic feedback.dlq: an ACL is missing"},
		{"no group read", "nogroup", kafkaPassword, "kafka: not authorized (User:nogroup): Read on group feedbackd: an ACL is missing"},
		{"no dlq write", "nodlqwrite", kafkaPassword, "kafka: not authorized (User:nodlqwrite): Write on topic feedback.dlq: an ACL is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			err := runOnce(t, secureConfig(t, k.Seeds, pki.CAFile, tc.user, tc.pass), 20*time.Second)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), kafkaPassword) {
				t.Fatalf("got %v, want one line starting %q", err, tc.want)
			}
			if time.Since(began) > 10*time.Second {
				t.Fatalf("took %s", time.Since(began))
			}
			t.Log(err)
		})
	}
}

// TestKafkaMTLSAndPLAIN: a client certificate alone (mTLS), and SASL PLAIN,
// each deliver an event.
func TestKafkaMTLSAndPLAIN(t *testing.T) {
	pki := testenv.NewPKI(t)
	clientCert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		broker []kfake.Opt
		client []kgo.Opt
		conf   func(*daemon.Config)
	}{
		{"mtls", []kfake.Opt{kfake.TLS(pki.ServerTLS(t, true))},
			[]kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: caPool(t, pki.CAFile), Certificates: []tls.Certificate{clientCert}})},
			func(c *daemon.Config) {
				c.Kafka.TLS = kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
			}},
		{"plain", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(kafkaconn.Plain, "feedbackd", kafkaPassword)},
			[]kgo.Opt{kgo.SASL(plain.Auth{User: "feedbackd", Pass: kafkaPassword}.AsMechanism())},
			func(c *daemon.Config) {
				c.Kafka.SASL = kafkaconn.SASL{Mechanism: kafkaconn.Plain, Username: "feedbackd", Password: kafkaPassword}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.conf, withKafka(tc.broker...), withKafkaClient(nil, tc.client...))
			rc := newReceiver(t, nil)
			h.createWebhook(webhookConfig("orgM", "sb", rc.URL))
			h.produceEvent(newEvent("evt-"+tc.name, "orgM", "sb", "sms", "delivered"))
			h.eventually("delivered", 20*time.Second, func() bool { return rc.count() == 1 })
			var ready map[string]any
			resp, err := http.Get(h.api + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/readyz %d %v", resp.StatusCode, ready)
			}
			if tc.name != "mtls" {
				return
			}
			// The broker goes away: /readyz names Kafka and the cause.
			h.kafka.Cluster.Close()
			var checks struct{ Checks map[string]string }
			h.eventually("/readyz names the Kafka failure", 20*time.Second, func() bool {
				resp, err := http.Get(h.api + "/readyz")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				json.NewDecoder(resp.Body).Decode(&checks)
				return resp.StatusCode == 503 && strings.HasPrefix(checks.Checks["kafka"], "kafka: cannot connect to broker 127.0.0.1:")
			})
			t.Log(checks.Checks["kafka"])
		})
	}
}

// TestKafkaReplayWithoutTransactionalIDACL: the one ACL start-up cannot
// ask about. The replay job fails with the cause; nothing is lost: the dead
// letter stays and no marker is written.
func TestKafkaReplayWithoutTransactionalIDACL(t *testing.T) {
	var acls []kfake.ACL
	for _, a := range readmeACLs() {
		if a.Resource != kmsg.ACLResourceTypeTransactionalId {
			acls = append(acls, a)
		}
	}
	h := start(t, func(c *daemon.Config) {
		c.Kafka.SASL = kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA512, Username: "feedbackd", Password: kafkaPassword}
	}, withKafka(kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(kafkaconn.ScramSHA512, "admin", adminPassword),
		kfake.User(kafkaconn.ScramSHA512, "feedbackd", kafkaPassword, acls...)),
		withKafkaClient(nil, kgo.SASL(scram.Auth{User: "admin", Pass: adminPassword}.AsSha512Mechanism())))
	h.produce("feedback.sent", []byte(`not json`))
	h.dlq(1)
	var p replay.Progress
	if code := h.call("POST", "/v1/dlq/replays", map[string]any{"reason": "invalid_event"}, &p); code != 202 {
		t.Fatalf("start replay: %d %+v", code, p)
	}
	h.eventually("replay ends", 30*time.Second, func() bool {
		h.call("GET", "/v1/dlq/replays/"+p.ID, nil, &p)
		return p.State != replay.StateRunning
	})
	if p.State != replay.StateFailed || !strings.Contains(p.Error, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") || p.Replayed != 0 {
		t.Fatalf("job: %+v", p)
	}
	if n := len(h.dlq(1)); n != 1 {
		t.Fatalf("%d dead letters", n)
	}
	t.Log(p.Error)
}
