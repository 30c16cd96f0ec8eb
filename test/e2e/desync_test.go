package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// desyncEndpoint answers its first request 200 and, 50 ms later, writes a
// second "200 OK" nobody asked for on the same connection; every later
// request gets 500. Two tenants' URLs point at it.
type desyncEndpoint struct {
	ln       net.Listener
	requests atomic.Int32
	wg       sync.WaitGroup
}

func newDesyncEndpoint(t *testing.T) *desyncEndpoint {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &desyncEndpoint{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			e.wg.Go(func() { e.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *desyncEndpoint) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if e.requests.Add(1) > 1 {
			_, _ = io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
			continue
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	}
}

func (e *desyncEndpoint) url(tenant string) string {
	return "http://" + e.ln.Addr().String() + "/hook?tenant=" + tenant
}

// An answer an endpoint sent nobody (issue 13's desync) never stands for
// the next request on that connection, another tenant's: through the
// pipeline, the second event gets the endpoint's real 500s and is retried,
// then dead-lettered; the admin test send says 500 too.
func TestLeftoverAnswerIsNotTheNextOnes(t *testing.T) {
	for _, how := range []string{"pipeline", "test send"} {
		t.Run(how, func(t *testing.T) {
			h := start(t, nil)
			ep := newDesyncEndpoint(t)
			h.createWebhook(webhookConfig("tenantA", "sb1", ep.url("a")))
			h.createWebhook(webhookConfig("tenantB", "sb1", ep.url("b")))

			h.produceEvent(newEvent("evt-desync-1", "tenantA", "sb1", "email", "sent"))
			h.eventually("the first event delivered", 20*time.Second, func() bool {
				return h.metric("feedbackd_deliveries_total", map[string]string{"result": "delivered"}) == 1
			})
			time.Sleep(300 * time.Millisecond) // the stray answer is in the socket by now

			if how == "test send" {
				var res struct {
					Outcome string
					Status  int
				}
				if code := h.call("POST", "/v1/webhooks/tenantB/sb1/test", nil, &res); code != http.StatusOK || res.Status != 500 {
					t.Errorf("tenant B's test send: %d %+v, want the endpoint's 500", code, res)
				}
				return
			}
			h.produceEvent(newEvent("evt-desync-2", "tenantB", "sb1", "email", "sent"))
			recs := h.dlq(1)
			if len(recs) != 1 {
				t.Fatalf("%d dead letters, want 1", len(recs))
			}
			r := recs[0]
			if r.WebhookID != "evt-desync-2" || r.Reason != dlq.ReasonRetriesExhausted || r.LastStatus != 500 || r.Attempts != 3 {
				t.Errorf("dead letter: %+v, want evt-desync-2 exhausted after 3 attempts answered 500", r.DeadLetter)
			}
			if n := h.metric("feedbackd_deliveries_total", map[string]string{"result": "delivered"}); n != 1 {
				t.Errorf("%v events delivered, want 1 (the first)", n)
			}
			if n := ep.requests.Load(); n != 4 {
				t.Errorf("the endpoint read %d requests, want 4 (1 + 3 attempts)", n)
			}
		})
	}
}
