package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

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

// createTenants registers the configs through the admin API. Tenant 0 is
// the slow or dead one when a scenario asks for it.
func (e *env) createTenants() error {
	dead := ""
	if e.o.deadTenant { // the receiver's, refused while the tenant is bad
		dead = fmt.Sprintf("http://127.0.0.1:%d/", e.deadPort)
		if e.tls != nil {
			dead = fmt.Sprintf("https://127.0.0.1:%d/", e.deadPort)
		}
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
				url := e.endpoint("t", i)
				switch {
				case i == 0 && e.o.slowTenant:
					url = e.endpoint("slow", 0)
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

// payload is an event of about 700 bytes of JSON, as the ceilings send,
// its requestId carrying the produce time for latency.
func payload() []byte { return eventFor(0, 0, time.Now().UnixNano(), 0) }

// topicOf is the index in channels of event n's topic, with hosts
// endpoint hosts: the four in turn every hosts events. Not n%4: events
// take the tenants in turn and tenants go to the hosts round robin, so
// with --tenants a multiple of 4 and --hosts 4 each topic's events went
// to one host only, and as feedbackd's fetches took the topics by turns
// the hosts' connection pools were used by turns (one host's idle pool
// empty while another held thousands). With tenants a multiple of hosts,
// the events to each host take the four topics in turn.
func topicOf(n, hosts int) int { return n / max(1, hosts) % 4 }

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

// flushTimeout bounds the wait for the broker to acknowledge what was
// produced: a run whose broker stops answering fails, saying so, rather
// than waiting forever (a run on 2026-12-03 at 16,384 slots waited 47
// minutes in Flush with kfake in this process).
const flushTimeout = 2 * time.Minute

// flush waits at most flushTimeout for every record produced to be
// acknowledged.
func (e *env) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := e.producer.Flush(ctx); err != nil {
		return fmt.Errorf("producing: %d records not acknowledged by the broker after %s: %w", e.producer.BufferedProduceRecords(), flushTimeout, err)
	}
	return nil
}

// produce writes events [from, to) at full speed, tenant picked by pick.
func (e *env) produce(from, to int, pick func(n int) int) error {
	ctx := context.Background()
	var failed atomic.Value
	for n := from; n < to; n++ {
		ch := topicOf(n, e.o.hosts)
		e.producer.Produce(ctx, &kgo.Record{Topic: channels[ch].topic, Key: []byte(strconv.Itoa(n)), Value: eventFor(n, ch, time.Now().UnixNano(), pick(n))},
			func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(err)
				}
			})
	}
	if err := e.flush(); err != nil {
		return err
	}
	if err, _ := failed.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// ceilingClient is one ceiling round's client: post sends a request as
// goroutine g (and reports success), close closes its connections.
type ceilingClient struct {
	post  func(g, n int) bool
	close func()
}

// ceilingTenant is the tenant of goroutine g's n-th request in a ceiling
// round: the tenants in turn as the events go to them (event i to tenant
// i%tenants, taken by the slots in order), so that with --hosts the
// ceilings spread over the hosts as feedbackd's slots do.
func (o options) ceilingTenant(g, n int) int { return (g + n*o.concurrency) % o.tenants }

// netHTTPClient is the raw ceiling's client: a plain net/http client POSTs
// what feedbackd would send to ceilingTenant(g, n): the same body size and the
// same headers (webhook-id, -timestamp, -signature of the same lengths, no
// Accept-Encoding), so that the receiver parses the same request. Each
// call makes a new client (a new transport: its own connections and, with
// --tls, no TLS session cache, as net/http has by default).
func (e *env) netHTTPClient() func() ceilingClient {
	body := payload()
	headers := make([]http.Header, e.o.concurrency)
	urls := make([]string, e.o.tenants)
	for i := range urls {
		urls[i] = e.endpoint("t", i)
	}
	for g := range headers {
		headers[g] = http.Header{
			"Content-Type":      {"application/json"},
			"User-Agent":        {"feedbackd/bench"},
			"Webhook-Id":        {fmt.Sprintf("bench-%d", 1_000_000+g)},
			"Webhook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)},
			"Webhook-Signature": {"v1," + strings.Repeat("A", 43) + "="},
		}
	}
	return func() ceilingClient {
		tr := &http.Transport{MaxIdleConnsPerHost: e.o.concurrency, MaxConnsPerHost: e.o.concurrency, DisableCompression: true}
		if e.tls != nil {
			tr.TLSClientConfig = e.tls.clientConfig()
		}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		return ceilingClient{post: func(g, n int) bool {
			req, err := http.NewRequest(http.MethodPost, urls[e.o.ceilingTenant(g, n)], bytes.NewReader(body))
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
		}, close: tr.CloseIdleConnections}
	}
}

// senderClient is the second ceiling's client: feedbackd's own sender
// (pkg/deliver: signing, its HTTP/1.1 transport) makes the attempt, as the
// pipeline would for ceilingTenant(g, n), without Kafka, Redis or parsing.
// Each call makes a new deliver.Client, with feedbackd's TLS settings (its
// own, with the bench's CA as roots).
func (e *env) senderClient() (func() ceilingClient, error) {
	secret, err := signature.NewSecret()
	if err != nil {
		return nil, err
	}
	targets := make([]*webhook.Target, e.o.tenants)
	for i := range targets {
		cfg := webhook.Config{URL: e.endpoint("t", i)}
		if targets[i], err = webhook.NewTarget(&webhook.Stored{Config: cfg, Secrets: []webhook.Secret{{Value: secret}}}); err != nil {
			return nil, err
		}
	}
	body := payload()
	ids := make([]string, e.o.concurrency)
	for g := range ids {
		ids[g] = "bench-" + strconv.Itoa(2_000_000+g)
	}
	ctx := context.Background()
	return func() ceilingClient {
		opts := deliver.Options{
			Timeout: 30 * time.Second, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/bench",
			MaxIdleConnsPerHost: e.o.concurrency,
		}
		if e.tls != nil {
			opts.TLSConfig = &tls.Config{RootCAs: e.tls.pool}
		}
		c := deliver.New(opts)
		return ceilingClient{post: func(g, n int) bool {
			return c.Send(ctx, targets[e.o.ceilingTenant(g, n)], ids[g], body).Verdict == deliver.Delivered
		}, close: c.Close}
	}, nil
}
