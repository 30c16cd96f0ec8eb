package e2e

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/daemon"
	"github.com/feedbackd/feedbackd/pkg/dlq"
)

// rebindingDNS answers a public address for rebind.example the first time
// (when the config is saved) and loopback afterwards (when it is dialed).
type rebindingDNS struct{ calls atomic.Int32 }

func (r *rebindingDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host != "rebind.example" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if r.calls.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// With the production defaults (no private networks), the admin API refuses
// endpoint URLs inside our network, and a name that resolves inside it at
// delivery time is dead-lettered as endpoint_invalid after one attempt,
// never retried.
func TestSSRFEndToEnd(t *testing.T) {
	h := start(t, func(c *daemon.Config) {
		c.Delivery.AllowPrivateNetworks = false
		c.Retry.Schedule = []time.Duration{time.Second}
	}, withResolver(&rebindingDNS{}))
	rc := newReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.URL, "http://"))

	for _, url := range []string{
		rc.URL, "http://localhost:" + port, "http://2130706433:" + port, "http://0x7f.0.0.1/", "http://[::ffff:127.0.0.1]/",
		"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://0.0.0.0/", "http://10.1.2.3/",
	} {
		var e struct {
			Error struct{ Field, Message string }
		}
		if code := h.call("POST", "/v1/webhooks", webhookConfig("org1", "sb1", url), &e); code != 400 || e.Error.Field != "url" {
			t.Errorf("%s: %d %+v", url, code, e.Error)
		}
	}
	cfg := webhookConfig("org1", "sb1", "https://auth-less.example/hook")
	cfg["auth"] = map[string]any{"type": "oauth2", "tokenUrl": "http://169.254.169.254/token", "clientId": "c", "clientSecret": "s"}
	var e struct{ Error struct{ Field string } }
	if code := h.call("POST", "/v1/webhooks", cfg, &e); code != 400 || e.Error.Field != "auth.tokenUrl" {
		t.Errorf("oauth2 token URL inside the network: %d %+v", code, e.Error)
	}

	h.createWebhook(webhookConfig("org1", "sb1", "http://rebind.example:"+port+"/hook"))
	h.produceEvent(newEvent("rebound", "org1", "sb1", "email", "sent"))
	r := h.dlq(1)[0]
	if r.Reason != dlq.ReasonEndpointInvalid || r.LastError != "address_blocked" || r.Attempts != 1 {
		t.Fatalf("dead letter: %+v", r.DeadLetter)
	}
	if rc.count() != 0 {
		t.Fatal("the loopback receiver was reached")
	}
	if n := h.metric("feedbackd_retries_scheduled_total", nil); n != 0 {
		t.Fatalf("a blocked delivery was retried %v times", n)
	}
}
