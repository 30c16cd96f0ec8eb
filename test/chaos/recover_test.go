package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// testRecoverKill9: a recovery of a 10-minute window is running when its
// instance is killed with SIGKILL; another instance resumes it once the
// job's lease expires. It must resend exactly the tenant's events of the
// window, each once for the job: the other tenant's events and those
// outside the window are not sent again. The one allowance is the requests
// in flight at the kill (answered, but their instance was gone before it
// recorded the deliveries), as in the kill9 scenario. How many that is
// depends on the machine: a job commits about a second of its rate (4
// records, 2 of them the tenant's) in one transaction, which the pipeline
// reads at once, and a loaded machine may still be sending the one before.
// So what is checked is when: a copy resent twice must have been answered
// for the job shortly before the kill (the delivery's record had no time to
// reach Redis) or just after it (the request was in the socket when the
// sender died).
func testRecoverKill9(t *testing.T, bin string, _ sizes) {
	e := newEnv(t, "recover-kill9", bin, envOptions{})
	d := e.startDaemon()
	e.createTenants(d, 2)
	org := tenantOrg(0)

	// 80 events, the two tenants alternating, one every 15 s of record
	// time from 40 minutes ago: the window [base+5m, base+15m) holds 40
	// of them, 20 of the tenant's.
	base := time.Now().Add(-40 * time.Minute).Truncate(time.Millisecond)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	since, until := base.Add(5*time.Minute), base.Add(15*time.Minute)
	inWindow := map[string]bool{}
	for i := range 80 {
		id := fmt.Sprintf("recover-%03d", i)
		tn := tenantOrg(i % 2)
		at := base.Add(time.Duration(i) * 15 * time.Second)
		rec := &kgo.Record{Topic: topics[i%len(topics)].topic, Key: []byte(tn + "/prod"), Value: eventJSON(id, tn, i), Timestamp: at}
		if err := cl.ProduceSync(contextFor(t), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if tn == org && !at.Before(since) && at.Before(until) {
			inWindow[id] = true
		}
	}
	waitFor(t, "the 80 events delivered", time.Minute, func() bool { return e.recv.deliveredCount() == 80 })

	var p replay.Progress
	body := map[string]any{"since": since.Format(time.RFC3339Nano), "until": until.Format(time.RFC3339Nano), "rate": 4}
	if code := e.call(d, http.MethodPost, "/v1/webhooks/"+org+"/prod/recover", body, &p); code != http.StatusAccepted {
		t.Fatalf("recover: HTTP %d %+v", code, p)
	}
	waitFor(t, "part of the window resent", time.Minute, func() bool {
		e.call(d, http.MethodGet, "/v1/webhooks/"+org+"/prod/recoveries/"+p.ID, nil, &p)
		return p.Replayed >= 5
	})
	killedAt := time.Now()
	e.kill(d)
	t.Logf("recover-kill9: %s killed with SIGKILL at %d of %d resent", d.name, p.Replayed, len(inWindow))

	// The job's lease (30 s) expires, then the new instance's resume loop
	// (every 15 s) takes it over.
	d = e.startDaemon()
	waitFor(t, "the recovery resumed to its end", 2*time.Minute, func() bool {
		e.call(d, http.MethodGet, "/v1/webhooks/"+org+"/prod/recoveries/"+p.ID, nil, &p)
		return p.State == replay.StateDone || p.State == replay.StateFailed
	})
	if p.State != replay.StateDone || p.Matched != int64(len(inWindow)) || p.Replayed != int64(len(inWindow)) {
		t.Fatalf("resumed job: %+v, want done with %d matched and resent", p, len(inWindow))
	}
	want := func(id string) int { return map[bool]int{true: 2, false: 1}[inWindow[id]] }
	waitFor(t, "the window delivered again", time.Minute, func() bool {
		ok := e.recv.receipts().ok
		for i := range 80 {
			if id := fmt.Sprintf("recover-%03d", i); ok[id] < want(id) {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // copies sent twice would arrive by now
	r := e.recv.receipts()
	inFlight := func(id string) bool {
		// ok times: the original delivery, the job's, its copy after the kill
		at := r.okAt[id]
		d := killedAt.Sub(at[1])
		return len(at) == 3 && d >= -200*time.Millisecond && d <= time.Second && at[2].After(killedAt)
	}
	extra := 0
	for i := range 80 {
		id := fmt.Sprintf("recover-%03d", i)
		switch got := r.ok[id]; {
		case got == want(id):
		case got == want(id)+1 && inWindow[id] && inFlight(id):
			extra++
		default:
			t.Errorf("%s (in the window: %v) delivered %d times (at %v; the kill at %v), want %d",
				id, inWindow[id], got, r.okAt[id], killedAt, want(id))
		}
	}
	if r.nproblems > 0 {
		t.Errorf("the receiver found %d problems: %v", r.nproblems, r.problems)
	}
	line := fmt.Sprintf("recover-kill9: the %d events of the window resent once for the job across a SIGKILL (%d twice: in flight at the kill)", len(inWindow), extra)
	summary.mu.Lock()
	summary.lines["recover-kill9"] = line
	summary.mu.Unlock()
	t.Log(line)
}

// call makes an admin API request to d and decodes a JSON answer into out.
func (e *env) call(d *daemon, method, path string, body, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.api+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// waitFor polls cond every 100 ms until it holds, failing the test after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", d, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
