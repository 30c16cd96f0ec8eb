// Package receiver is a webhook endpoint that verifies feedbackd's
// signatures the way a tenant's receiver should. The embedded demo and
// `feedbackctl receive` use it.
package receiver

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/feedbackd/feedbackd/pkg/signature"
)

// Delivery is what the receiver got, after verification.
type Delivery struct {
	WebhookID string
	Body      []byte
	Attempt   int // how many times this webhook-id has arrived, this one included
	Status    string
	Channel   string
	RequestID string
}

// Receiver is an http.Handler. Answer decides the HTTP status for a
// verified delivery (nil: 200). It is safe for concurrent use.
type Receiver struct {
	Answer func(Delivery) int
	Log    *slog.Logger

	verifier atomic.Pointer[signature.Verifier]
	mu       sync.Mutex
	attempts map[string]int
}

// SetSecrets sets the secrets signatures are checked against; until it is
// called every request is refused.
func (rc *Receiver) SetSecrets(secrets ...string) error {
	v, err := signature.NewVerifier(secrets...)
	if err != nil {
		return err
	}
	rc.verifier.Store(v)
	return nil
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := rc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get("webhook-id")
	v := rc.verifier.Load()
	if v == nil {
		http.Error(w, "no secret configured", http.StatusServiceUnavailable)
		return
	}
	if err := v.Verify(id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body); err != nil {
		log.Warn("signature INVALID: refused", "webhook_id", id, "error", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		RequestID string `json:"requestId"`
		Channel   string `json:"channel"`
		Feedback  struct {
			Status struct {
				Value string `json:"value"`
			} `json:"feedbackStatus"`
		} `json:"messageDeliveryFeedback"`
	}
	_ = json.Unmarshal(body, &ev)
	rc.mu.Lock()
	if rc.attempts == nil {
		rc.attempts = map[string]int{}
	}
	rc.attempts[id]++
	d := Delivery{WebhookID: id, Body: body, Attempt: rc.attempts[id], Status: ev.Feedback.Status.Value, Channel: ev.Channel, RequestID: ev.RequestID}
	rc.mu.Unlock()

	status := http.StatusOK
	if rc.Answer != nil {
		status = rc.Answer(d)
	}
	attrs := []any{"webhook_id", id, "status", d.Status, "channel", d.Channel, "request_id", d.RequestID, "attempt", d.Attempt, "answer", status}
	if status >= 200 && status < 300 {
		log.Info("signature verified: webhook accepted", attrs...)
	} else {
		log.Info("signature verified: answering an error on purpose", attrs...)
	}
	w.WriteHeader(status)
	if status >= 300 { // a body, so that the delivery log shows the start of an answer
		_, _ = fmt.Fprintf(w, "%d %s: answered on purpose by the demo receiver\n", status, http.StatusText(status))
	}
}
