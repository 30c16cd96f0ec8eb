package chaos

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kind is what should become of a produced record.
type kind int

const (
	valid     kind = iota // delivered, or dead-lettered as retries_exhausted after 500s
	skipped               // for an organisation without config: skipped, never sent nor dead-lettered
	malformed             // not a valid event: dead-lettered as invalid_event
)

// item is one produced record.
type item struct {
	kind  kind
	id    string // eventId (valid, skipped) or a label (malformed)
	topic string
	key   []byte
	value []byte
}

// plan is every record a scenario produces.
type plan struct {
	items   []item
	byID    map[string]int // valid and skipped, by eventId
	byValue map[string]int // all, by value
	valid   int            // records of kind valid
}

// planOptions: every malformedEvery-th record is malformed and every
// skipEvery-th one is for ghostOrg (0: none).
type planOptions struct {
	events, tenants           int
	malformedEvery, skipEvery int
}

var topics = []struct{ topic, channel, status string }{
	{"feedback.sent", "email", "sent"}, {"feedback.delivered", "email", "delivered"},
	{"feedback.bounce", "email", "bounce"}, {"feedback.error", "sms", "error"},
}

func newPlan(scenario string, o planOptions) *plan {
	p := &plan{byID: map[string]int{}, byValue: map[string]int{}}
	for n := range o.events {
		id := fmt.Sprintf("%s-%06d", scenario, n)
		tp := topics[n%len(topics)]
		it := item{kind: valid, id: id, topic: tp.topic}
		switch {
		case o.malformedEvery > 0 && n%o.malformedEvery == o.malformedEvery-1:
			it.kind, it.key, it.value = malformed, []byte("malformed"), malformedValue(id, n/o.malformedEvery)
		case o.skipEvery > 0 && n%o.skipEvery == o.skipEvery/2:
			it.kind, it.key, it.value = skipped, []byte(ghostOrg+"/prod"), eventJSON(id, ghostOrg, n)
			p.byID[id] = n
		default:
			org := tenantOrg(n % o.tenants)
			it.key, it.value = []byte(org+"/prod"), eventJSON(id, org, n)
			p.byID[id] = n
			p.valid++
		}
		p.byValue[string(it.value)] = n
		p.items = append(p.items, it)
	}
	return p
}

// count is how many records of kind k the plan has.
func (p *plan) count(k kind) int {
	n := 0
	for _, it := range p.items {
		if it.kind == k {
			n++
		}
	}
	return n
}

// eventJSON is a valid event of about 700 bytes whose eventId is id and
// whose requestId is "req-" + id (the receiver checks both).
func eventJSON(id, org string, n int) []byte {
	tp := topics[n%len(topics)]
	return fmt.Appendf(nil, `{"eventId":%q,"requestId":"req-%s","imsOrg":%q,"sandbox":{"id":"prod","name":"Production"},`+
		`"channel":%q,"eventType":"message.feedback","messageExecution":{"messageExecutionID":"MEID-%010d",`+
		`"messageType":"transactional","campaignID":"3c2c0c44-5d1b-4d6f-9d3f-0a3c1c1f7b2e","batchInstanceID":"7d0e1f3a-9b2c-4c55-8f1e-2b6a7d9c0e41"},`+
		`"messageDeliveryFeedback":{"feedbackStatus":{"value":%q},"offers":null,"retryCount":0,`+
		`"messageFailure":{"category":"none","type":"none","code":"none","reason":"chaos event"}},`+
		`"identityMap":{"email":[{"id":"recipient-%d@example.com","primary":true}]}}`,
		id, id, org, tp.channel, n, tp.status, n)
}

// malformedValue is a record value no valid event has, unique per label:
// truncated JSON, not JSON, a missing required field, or a value outside
// the schema.
func malformedValue(label string, variant int) []byte {
	switch variant % 4 {
	case 0:
		return fmt.Appendf(nil, `{"malformed":%q`, label)
	case 1:
		return fmt.Appendf(nil, "not json at all: %s", label)
	case 2:
		return fmt.Appendf(nil, `{"eventId":%q,"requestId":"req-%s","channel":"email"}`, label, label)
	default:
		return fmt.Appendf(nil, `{"requestId":"req-%s","imsOrg":"%s","sandbox":{"id":"prod"},"channel":"pigeon",`+
			`"messageExecution":{"campaignID":"c"},"messageDeliveryFeedback":{"feedbackStatus":{"value":"sent"}}}`, label, tenantOrg(0))
	}
}

// produce writes the plan's records in order, at most perSecond of them a
// second (0: as fast as possible), and reports the produced count as it
// goes. A record the client cannot write is an error: the client retries
// without limit, so that means the broker is gone.
func produce(ctx context.Context, cl *kgo.Client, p *plan, perSecond int, produced *atomic.Int64) error {
	var failed atomic.Value
	const batch = 500
	start := time.Now()
	for from := 0; from < len(p.items); from += batch {
		to := min(from+batch, len(p.items))
		for _, it := range p.items[from:to] {
			cl.Produce(ctx, &kgo.Record{Topic: it.topic, Key: it.key, Value: it.value}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(err)
					return
				}
				produced.Add(1)
			})
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err, _ := failed.Load().(error); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		if perSecond > 0 {
			due := start.Add(time.Duration(float64(to) / float64(perSecond) * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}
