package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// Deliveries through a real egress proxy (tinyproxy, with a password):
// events to an https endpoint go through CONNECT tunnels and verify; an
// endpoint on a port the proxy refuses gets proxy_403, retried, then
// dead-lettered with that class. Logs name the proxy by host:port only.
func TestDeliveriesThroughProxy(t *testing.T) {
	rc := newReceiver(t, nil)
	tlsRecv := httptest.NewTLSServer(rc.Config.Handler) // the receiver's handler, over TLS
	t.Cleanup(tlsRecv.Close)
	refused := httptest.NewTLSServer(rc.Config.Handler)
	t.Cleanup(refused.Close)
	u, _ := url.Parse(tlsRecv.URL)
	allowed, _ := strconv.Atoi(u.Port())
	px := testenv.StartTinyproxy(t, testenv.TinyproxyConfig{ConnectPorts: []int{allowed}, User: "feedbackd", Pass: "pr0xy-s3cret"})

	var logs syncBuffer
	h := start(t, func(c *daemon.Config) {
		c.Delivery.Proxy = px.URL("feedbackd", "pr0xy-s3cret")
	}, withLogs(&logs), withDeliveryTLS(tlsRecv.Client().Transport.(*http.Transport).TLSClientConfig))

	secret := h.createWebhook(webhookConfig("org1", "sb1", tlsRecv.URL+"/hook"))
	h.createWebhook(webhookConfig("org2", "sb2", refused.URL+"/hook"))
	for i := range 3 {
		h.produceEvent(newEvent("via-proxy-"+strconv.Itoa(i), "org1", "sb1", "email", "sent"))
	}
	h.produceEvent(newEvent("refused-by-proxy", "org2", "sb2", "email", "sent"))

	h.eventually("3 deliveries through the proxy", 30*time.Second, func() bool { return rc.count() >= 3 })
	for _, d := range rc.deliveries() {
		verify(t, secret, d)
		if d.header.Get("Proxy-Authorization") != "" {
			t.Error("the endpoint got the proxy's credentials")
		}
	}
	r := h.dlq(1)[0]
	if r.Reason != dlq.ReasonRetriesExhausted || r.LastError != "proxy_403" || r.Attempts != 3 {
		t.Fatalf("dead letter of the refused endpoint: %+v", r.DeadLetter)
	}
	if rc.count() != 3 {
		t.Errorf("the receiver got %d deliveries, want 3", rc.count())
	}
	if n := strings.Count(px.Log(), "): CONNECT 127.0.0.1:"+u.Port()); n < 1 || n > 3 {
		t.Errorf("%d CONNECTs to the endpoint, want 1 to 3:\n%s", n, px.Log())
	}
	if out := logs.String(); strings.Contains(out, "pr0xy-s3cret") {
		t.Errorf("the proxy's password is in the logs:\n%s", out)
	} else if !strings.Contains(out, `"delivery.proxy":"`+px.Addr+`"`) {
		t.Errorf("no log line names the proxy by host:port:\n%s", out)
	}
}
