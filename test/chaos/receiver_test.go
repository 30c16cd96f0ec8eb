package chaos

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiver is every tenant's endpoint: a real HTTP server in the test
// process. It verifies each request's Standard Webhooks signature with the
// tenant's secret (the reference library, independent of feedbackd's),
// checks that the body is the event the webhook-id names, for the tenant
// whose URL it reached, and answers 500 to a random share of attempts and
// 200 to the rest. It counts attempts and 2xx answers per webhook-id.
type receiver struct {
	addr     string
	failRate float64
	srv      *http.Server

	mu        sync.Mutex
	tenants   map[string]tenantCheck // by URL path
	ok        map[string]int         // 2xx answers per webhook-id
	attempts  map[string]int         // requests per webhook-id
	firstBody map[string][32]byte    // body of the first 2xx, to compare duplicates with
	okAt      map[string][]time.Time // when each 2xx was answered
	delivered int                    // webhook-ids answered 2xx at least once
	answered  [2]int                 // 200s, 500s
	problems  []string               // first few
	nproblems int
}

type tenantCheck struct {
	tenant
	wh *standardwebhooks.Webhook
}

func startReceiver(t *testing.T, failRate float64) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{
		addr: l.Addr().String(), failRate: failRate,
		tenants: map[string]tenantCheck{}, ok: map[string]int{}, attempts: map[string]int{},
		firstBody: map[string][32]byte{}, okAt: map[string][]time.Time{},
	}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(l) }()
	t.Cleanup(func() { _ = rc.srv.Close() })
	return rc
}

func (rc *receiver) addTenant(t *testing.T, tn tenant) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(tn.secret)
	if err != nil {
		t.Fatalf("signing secret of %s: %v", tn.org, err)
	}
	rc.mu.Lock()
	rc.tenants[tn.path] = tenantCheck{tenant: tn, wh: wh}
	rc.mu.Unlock()
}

// body is what the receiver reads of a delivered event.
type body struct {
	RequestID string          `json:"requestId"`
	ImsOrg    string          `json:"imsOrg"`
	EventID   json.RawMessage `json:"eventId"`
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	id := r.Header.Get("webhook-id")
	rc.mu.Lock()
	tn, known := rc.tenants[r.URL.Path]
	rc.mu.Unlock()
	problem := ""
	switch {
	case err != nil:
		problem = "reading the body: " + err.Error()
	case !known:
		problem = "request to an unknown path " + r.URL.Path
	default:
		problem = check(tn, id, raw, r.Header)
	}
	fail := rand.Float64() < rc.failRate
	sum := sha256.Sum256(raw)

	rc.mu.Lock()
	rc.attempts[id]++
	if !fail {
		rc.okAt[id] = append(rc.okAt[id], time.Now())
		rc.ok[id]++
		if rc.ok[id] == 1 {
			rc.delivered++
			rc.firstBody[id] = sum
		} else if rc.firstBody[id] != sum && problem == "" {
			problem = "a duplicate's body differs from the first delivery's"
		}
	}
	if problem != "" {
		rc.nproblems++
		if len(rc.problems) < 10 {
			rc.problems = append(rc.problems, fmt.Sprintf("webhook-id %q: %s", id, problem))
		}
	}
	if fail {
		rc.answered[1]++
	} else {
		rc.answered[0]++
	}
	rc.mu.Unlock()

	if fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// check is what a careful receiver checks, and what feedbackd promises:
// a valid signature, the webhook-id is the event's eventId (requestId is
// "req-" + eventId by construction), the body is that tenant's event and
// eventId itself was removed.
func check(tn tenantCheck, id string, raw []byte, h http.Header) string {
	if id == "" {
		return "no webhook-id"
	}
	if err := tn.wh.Verify(raw, h); err != nil {
		return "signature does not verify: " + err.Error()
	}
	var b body
	if err := json.Unmarshal(raw, &b); err != nil {
		return "body is not JSON: " + err.Error()
	}
	switch {
	case b.RequestID != "req-"+id:
		return fmt.Sprintf("body of requestId %q under webhook-id %q", b.RequestID, id)
	case b.ImsOrg != tn.org:
		return fmt.Sprintf("event of %s delivered to %s's endpoint", b.ImsOrg, tn.org)
	case b.EventID != nil:
		return "eventId was not removed from the body"
	}
	return ""
}

// receipts is a copy of the receiver's counts.
type receipts struct {
	ok, attempts   map[string]int
	okAt           map[string][]time.Time // of webhook-ids answered 2xx more than once
	delivered      int
	ok200, fail500 int
	problems       []string
	nproblems      int
}

func (rc *receiver) receipts() receipts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := receipts{ok: make(map[string]int, len(rc.ok)), attempts: make(map[string]int, len(rc.attempts)),
		delivered: rc.delivered, ok200: rc.answered[0], fail500: rc.answered[1],
		problems: append([]string(nil), rc.problems...), nproblems: rc.nproblems}
	r.okAt = map[string][]time.Time{}
	for k, v := range rc.ok {
		r.ok[k] = v
		if v > 1 {
			r.okAt[k] = append([]time.Time(nil), rc.okAt[k]...)
		}
	}
	for k, v := range rc.attempts {
		r.attempts[k] = v
	}
	return r
}

func (rc *receiver) deliveredCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.delivered
}
