package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/configstore"
	"github.com/feedbackd/feedbackd/pkg/dedupe"
	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/header"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/pkg/retry"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// The fakes of the stages' dependencies are plain functions: the decisions
// are tested without Kafka, Redis or HTTP.
type (
	configsFunc func(org, sandbox string) (*webhook.Target, error)
	sendFunc    func() deliver.Result
	admitter    struct {
		admit func() admission.Decision
		slow  bool
	}
	deduper struct {
		claim     dedupe.State
		delivered bool
	}
)

func (f configsFunc) Lookup(_ context.Context, org, sandbox string) (*webhook.Target, error) {
	return f(org, sandbox)
}
func (configsFunc) Disable(context.Context, string, string, string) error { return nil }

// Start answers on a goroutine of its own, as deliver.Client does for a
// slow answer.
func (f sendFunc) Start(_ context.Context, _ *webhook.Target, _ string, _ []byte, done func(deliver.Result)) {
	go func() { done(f()) }()
}

// quickSendFunc is sendFunc answered before Start returns, as
// deliver.Client does for a quick answer.
type quickSendFunc sendFunc

func (f quickSendFunc) Start(_ context.Context, _ *webhook.Target, _ string, _ []byte, done func(deliver.Result)) {
	done(f())
}

// stagesOnly is a Pipeline for process alone: no Kafka client, one slot.
func stagesOnly(opts Options, configs Configs, sender Sender) *Pipeline {
	return &Pipeline{
		opts:    opts,
		configs: configs,
		sender:  sender,
		metrics: newMetrics(prometheus.NewRegistry(), nil),
		log:     slog.New(slog.DiscardHandler),
		slots:   newSlots(1, 1, prometheus.NewGauge(prometheus.GaugeOpts{Name: "inflight"})),
		parking: newParking(0, prometheus.NewGauge(prometheus.GaugeOpts{Name: "parked"})),
	}
}

// processed is the outcome process decides for j.
func processed(ctx context.Context, p *Pipeline, j *job, s *slot) Outcome {
	decided := make(chan Outcome, 1)
	p.process(ctx, j, s, func(o Outcome) { decided <- o })
	return <-decided
}

func (a admitter) Admit(context.Context, string) admission.Decision { return a.admit() }
func (a admitter) Wait(ctx context.Context, _ string) (admission.Decision, error) {
	<-ctx.Done()
	return admission.Decision{}, ctx.Err()
}
func (a admitter) Slow(string) bool                                { return a.slow }
func (admitter) Success(context.Context, string) bool              { return false }
func (admitter) Failure(context.Context, string) (time.Time, bool) { return time.Time{}, false }

func (d deduper) Claim(context.Context, string, time.Duration) dedupe.Claim {
	return dedupe.Claim{State: d.claim}
}
func (d deduper) Delivered(context.Context, string) bool      { return d.delivered }
func (deduper) Release(context.Context, string, dedupe.Claim) {}
func (deduper) Record(_ string, then func(error))             { then(nil) }

var testPolicy = retry.Policy{Schedule: []time.Duration{5 * time.Second, time.Minute, time.Hour}}

const testEvent = `{"requestId":"r-1","imsOrg":"orgA","sandbox":{"id":"prod"},"channel":"email",` +
	`"eventType":"message.feedback","messageExecution":{"campaignID":"camp-1"},` +
	`"messageDeliveryFeedback":{"feedbackStatus":{"value":"STATUS"}},"eventId":"evt-1"}`

func eventWith(status string) []byte { return []byte(strings.Replace(testEvent, "STATUS", status, 1)) }

func target(mod func(*webhook.Config)) configsFunc {
	return func(org, sandbox string) (*webhook.Target, error) {
		c := webhook.Config{Org: org, Sandbox: webhook.Sandbox{ID: sandbox}, Channels: []string{"email"},
			Campaigns: []string{webhook.AllCampaigns}, Enabled: true}
		if mod != nil {
			mod(&c)
		}
		return &webhook.Target{Config: c, Endpoint: "ep-1"}, nil
	}
}

func answer(v deliver.Verdict, status int, class string) sendFunc {
	return func() deliver.Result { return deliver.Result{Verdict: v, Status: status, Class: class} }
}

func goAhead() admission.Decision {
	return admission.Decision{Answer: admission.Go, Release: func() {}}
}

// TestProcessDecides covers every outcome process can decide, one row per
// way of getting there.
// processCase is one of TestProcessDecides's cases.
type processCase struct {
	name      string
	value     []byte
	state     *header.Retry // a retry record's
	badState  error
	configs   configsFunc
	admission *admitter
	dedupe    *deduper
	send      sendFunc
	ctx       func() context.Context

	kind      Kind
	reason    string
	error     string
	tier      time.Duration
	attempted bool
}

func TestProcessDecides(t *testing.T) {
	now := time.Now()
	retryState := func(attempts int) *header.Retry {
		return &header.Retry{WebhookID: "evt-1", Attempts: attempts, DueAt: now}
	}
	cases := []processCase{
		{name: "not JSON", value: []byte(`{"imsOrg":`), kind: DeadLettered, reason: dlq.ReasonInvalidEvent, error: "invalid_json"},
		{name: "schema", value: []byte(`{"imsOrg":"orgA"}`), kind: DeadLettered, reason: dlq.ReasonInvalidEvent, error: "schema: "},
		{name: "unreadable retry state", state: &header.Retry{WebhookID: "evt-1"}, badState: errors.New("retry header retry-attempts: bad"),
			kind: DeadLettered, reason: dlq.ReasonInvalidEvent, error: "retry_state"},
		{name: "status not delivered", value: eventWith("exclude"), kind: Skipped, reason: webhook.SkipStatus},
		{name: "no config", configs: func(string, string) (*webhook.Target, error) { return nil, configstore.ErrNotFound },
			kind: Skipped, reason: webhook.SkipNoConfig},
		{name: "config unusable", configs: func(string, string) (*webhook.Target, error) { return nil, configstore.ErrCorrupt },
			kind: DeadLettered, reason: dlq.ReasonEndpointInvalid, error: "config_unusable"},
		{name: "Redis down until the work context ends", configs: func(string, string) (*webhook.Target, error) { return nil, errors.New("redis: down") },
			ctx: func() context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			}, kind: Abandoned},
		{name: "config disabled", configs: target(func(c *webhook.Config) { c.Enabled = false }),
			kind: DeadLettered, reason: dlq.ReasonEndpointDisabled, error: "config_disabled"},
		{name: "channel off", configs: target(func(c *webhook.Config) { c.Channels = []string{"sms"} }),
			kind: Skipped, reason: webhook.SkipChannel},
		{name: "campaign off", configs: target(func(c *webhook.Config) { c.Campaigns = []string{"camp-2"} }),
			kind: Skipped, reason: webhook.SkipCampaign},
		{name: "breaker open", admission: &admitter{admit: func() admission.Decision {
			return admission.Decision{Answer: admission.Open, Until: time.Now().Add(30 * time.Second)}
		}}, kind: Deferred, reason: deferCircuitOpen, tier: time.Minute},
		{name: "busy and slow", admission: &admitter{admit: func() admission.Decision { return admission.Decision{Answer: admission.Busy} }, slow: true},
			kind: Deferred, reason: deferEndpointBusy, tier: time.Minute}, // 5 s and up to half again: the 1m tier
		{name: "busy past the schedule's span",
			state:     &header.Retry{WebhookID: "evt-1", DueAt: now, Deferrals: 40, DeferredSince: now.Add(-2 * time.Hour)},
			admission: &admitter{admit: func() admission.Decision { return admission.Decision{Answer: admission.Busy} }, slow: true},
			kind:      DeadLettered, reason: dlq.ReasonRetriesExhausted, error: deferEndpointBusy},
		{name: "delivered already", state: retryState(1), dedupe: &deduper{claim: dedupe.AlreadyDelivered},
			kind: Duplicate, reason: dupAlready},
		{name: "claim held elsewhere", state: retryState(1), dedupe: &deduper{claim: dedupe.InFlight},
			kind: Deferred, reason: deferInFlight, tier: 5 * time.Second},
		{name: "2xx", send: answer(deliver.Delivered, 200, ""), kind: Delivered, attempted: true},
		{name: "2xx of a claimed retry", state: retryState(1), dedupe: &deduper{claim: dedupe.Claimed},
			send: answer(deliver.Delivered, 204, ""), kind: Delivered, attempted: true},
		{name: "5xx", send: answer(deliver.Retry, 503, "http_503"), kind: Retried, tier: 5 * time.Second, attempted: true},
		{name: "429 with Retry-After", send: func() deliver.Result {
			return deliver.Result{Verdict: deliver.Retry, Status: 429, Class: "http_429", RetryAfter: 30 * time.Second}
		}, kind: Retried, tier: time.Minute, attempted: true},
		{name: "no answer", send: answer(deliver.Retry, 0, "timeout"), kind: Retried, tier: 5 * time.Second, attempted: true},
		{name: "5xx, schedule exhausted", state: retryState(3), send: answer(deliver.Retry, 503, "http_503"),
			kind: DeadLettered, reason: dlq.ReasonRetriesExhausted, attempted: true},
		{name: "5xx, exhausted but delivered by another copy", state: retryState(3), dedupe: &deduper{claim: dedupe.Claimed, delivered: true},
			send: answer(deliver.Retry, 503, "http_503"), kind: Duplicate, reason: dupExhausted, attempted: true},
		{name: "4xx", send: answer(deliver.Reject, 400, "http_400"), kind: DeadLettered, reason: dlq.ReasonRejected, attempted: true},
		{name: "3xx", send: answer(deliver.Reject, 302, "http_302"), kind: DeadLettered, reason: dlq.ReasonRejected, attempted: true},
		{name: "410 Gone", send: answer(deliver.Gone, 410, "http_410"), kind: DeadLettered, reason: dlq.ReasonRejected, attempted: true},
		{name: "address refused", send: answer(deliver.Unreachable, 0, "address_refused"),
			kind: DeadLettered, reason: dlq.ReasonEndpointInvalid, attempted: true},
		{name: "attempt cut short by the drain", send: answer(deliver.Aborted, 0, "canceled"), kind: Abandoned},
	}
	// Each case with the answer given before Start returns (quick) and on
	// another goroutine (slow), the sender's two ways.
	for _, c := range cases {
		for _, answered := range []string{"quick", "slow"} {
			t.Run(c.name+"/"+answered, func(t *testing.T) {
				runProcessCase(t, c, answered == "quick")
			})
		}
	}
}

func runProcessCase(t *testing.T, c processCase, quick bool) {
	if c.value == nil {
		c.value = eventWith("bounce")
	}
	if c.configs == nil {
		c.configs = target(nil)
	}
	if c.send == nil {
		c.send = func() deliver.Result { t.Error("an attempt was made"); return deliver.Result{} }
	}
	var sender Sender = c.send
	if quick {
		sender = quickSendFunc(c.send)
	}
	p := stagesOnly(Options{Policy: testPolicy, ClaimTTL: time.Minute}, c.configs, sender)
	if c.admission != nil {
		p.opts.Admission = c.admission
	}
	if c.dedupe != nil {
		p.opts.Dedupe = c.dedupe
	}
	ctx := context.Background()
	if c.ctx != nil {
		ctx = c.ctx()
	}
	topic := "feedback.bounce"
	if c.state != nil || c.badState != nil {
		topic = "feedback.retry.5s"
	}
	rec := &kgo.Record{Topic: topic, Value: c.value, Timestamp: time.Now()}
	if c.state != nil || c.badState != nil {
		rec.Headers = c.state.Append(nil) // what a retry record carries
	}
	j := &job{rec: rec, part: &offsets.Partition{Topic: topic},
		state: c.state, badState: c.badState}
	if c.badState != nil {
		j.state = nil // dispatch could not read it
	}
	s := p.slots.acquire(ctx)
	defer func() { s.done(); s.end() }()

	o := processed(ctx, p, j, s)
	if o.Kind != c.kind || o.Reason != c.reason || !strings.HasPrefix(o.Error, c.error) || (c.error == "") != (o.Error == "") {
		t.Fatalf("outcome %v %q (error %q), want %v %q (error %q)", o.Kind, o.Reason, o.Error, c.kind, c.reason, c.error)
	}
	if o.Tier != c.tier {
		t.Errorf("tier %s, want %s", o.Tier, c.tier)
	}
	if o.Kind == Retried || o.Kind == Deferred {
		if o.After <= 0 || o.After > o.Tier+o.Tier/2 {
			t.Errorf("due after %s, want within (0, 1.5 x tier %s]", o.After, o.Tier)
		}
	}
	if (o.Attempt != nil) != c.attempted {
		t.Errorf("attempt %+v, want one: %v", o.Attempt, c.attempted)
	}
	if o.Kind == DeadLettered && o.Reason == dlq.ReasonInvalidEvent && o.Err == nil {
		t.Error("an invalid event's outcome does not say what is wrong")
	}
	if j.st == nil || j.st.WebhookID == "" {
		t.Error("the job has no delivery state with a webhook-id: its dead letter could not name it")
	}
}
