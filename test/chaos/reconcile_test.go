package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	dlqTopic    = "feedback.dlq"
	retryPrefix = "feedback.retry."
	// attemptsPerEvent is one attempt plus one per delay of the schedule.
	attemptsPerEvent = 4
)

// deadLetter is what the reconciliation reads of a dead letter.
type deadLetter struct {
	reason, lastError, source string
}

// dlqReader reads feedback.dlq from the start, without a group, for as
// long as the scenario runs.
type dlqReader struct {
	mu      sync.Mutex
	byID    map[string][]deadLetter
	byValue map[string][]deadLetter // invalid_event only: matched by value
	total   int
	done    chan struct{}
}

func startDLQReader(t *testing.T, seeds []string) *dlqReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(dlqTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := &dlqReader{byID: map[string][]deadLetter{}, byValue: map[string][]deadLetter{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			if fetches.IsClientClosed() {
				return
			}
			fetches.EachRecord(r.add)
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done; cl.Close() })
	return r
}

func (r *dlqReader) add(rec *kgo.Record) {
	h := map[string]string{}
	for _, x := range rec.Headers {
		h[x.Key] = string(x.Value)
	}
	d := deadLetter{reason: h["dlq-reason"], lastError: h["dlq-last-error"], source: h["dlq-source"]}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	r.byID[h["webhook-id"]] = append(r.byID[h["webhook-id"]], d)
	if d.reason == "invalid_event" {
		r.byValue[string(rec.Value)] = append(r.byValue[string(rec.Value)], d)
	}
}

// snapshot copies what was read so far.
func (r *dlqReader) snapshot() (byID, byValue map[string][]deadLetter, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID = make(map[string][]deadLetter, len(r.byID))
	for k, v := range r.byID {
		byID[k] = append([]deadLetter(nil), v...)
	}
	byValue = make(map[string][]deadLetter, len(r.byValue))
	for k, v := range r.byValue {
		byValue[k] = append([]deadLetter(nil), v...)
	}
	return byID, byValue, r.total
}

// pending is how many records of the input and retry topics the group has
// not committed yet: 0 means every record was settled (delivered, skipped,
// handed on to a retry tier or dead-lettered) and no retry is waiting.
func pending(ctx context.Context, adm *kadm.Client) (int64, error) {
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, name := range tds.Names() {
		if strings.HasPrefix(name, retryPrefix) || isInputTopic(name) {
			names = append(names, name)
		}
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var lag int64
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
			return
		}
		at := int64(0)
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At > 0 {
			at = c.At
		}
		lag += max(o.Offset-at, 0)
	})
	return lag, ferr
}

func isInputTopic(name string) bool {
	for _, tp := range topics {
		if tp.topic == name {
			return true
		}
	}
	return false
}

// tally is one scenario's outcome.
type tally struct {
	produced, delivered, deadLettered, skipped, lost int
	duplicates                                       int // 2xx answers beyond the first per webhook-id
	deliveredAndDLQ                                  int // delivered, and dead-lettered by a later redelivery
	dlqDuplicates                                    int // dead letters beyond the first per event
	reasons                                          map[string]int
	lostIDs                                          []string
	problems                                         []string
	ok200, fail500                                   int
}

func (t tally) rate() float64 {
	if t.produced == 0 {
		return 0
	}
	return float64(t.duplicates) / float64(t.produced)
}

func (t tally) line(name string, took time.Duration) string {
	return fmt.Sprintf("scenario %s: produced=%d delivered=%d dead-lettered=%d skipped=%d lost=%d duplicates=%d (%.3f%%) in %s",
		name, t.produced, t.delivered, t.deadLettered, t.skipped, t.lost, t.duplicates, 100*t.rate(), took.Round(time.Second))
}

func (t tally) detail() string {
	var rs []string
	for k, v := range t.reasons {
		rs = append(rs, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(rs)
	return fmt.Sprintf("dead letters by reason [%s], delivered and also dead-lettered %d, duplicate dead letters %d, receiver answered 200 %d and 500 %d times",
		strings.Join(rs, " "), t.deliveredAndDLQ, t.dlqDuplicates, t.ok200, t.fail500)
}

// count reconciles the plan against the receiver's log and the DLQ.
// settled says the group committed everything: only then are events
// without a delivery or dead letter for ghostOrg counted as skipped.
func count(p *plan, rc receipts, byID, byValue map[string][]deadLetter, settled bool) tally {
	t := tally{produced: len(p.items), reasons: map[string]int{}, ok200: rc.ok200, fail500: rc.fail500}
	t.problems = append(t.problems, rc.problems...)
	if rc.nproblems > len(rc.problems) {
		t.problems = append(t.problems, fmt.Sprintf("... %d receiver problems in all", rc.nproblems))
	}
	problem := func(format string, a ...any) {
		if len(t.problems) < 30 {
			t.problems = append(t.problems, fmt.Sprintf(format, a...))
		}
	}
	for _, it := range p.items {
		switch it.kind {
		case malformed:
			dls := byValue[string(it.value)]
			if len(dls) == 0 {
				t.lost++
				t.lostIDs = append(t.lostIDs, it.id)
				continue
			}
			t.deadLettered++
			t.dlqDuplicates += len(dls) - 1
			t.reasons["invalid_event"]++
		case skipped:
			if n := rc.attempts[it.id]; n > 0 {
				problem("%s is for an organisation without config but reached the receiver %d times", it.id, n)
			}
			if dls := byID[it.id]; len(dls) > 0 {
				problem("%s is for an organisation without config but was dead-lettered as %s", it.id, dls[0].reason)
			}
			if settled {
				t.skipped++
			} else {
				t.lost++
				t.lostIDs = append(t.lostIDs, it.id)
			}
		default:
			n, dls := rc.ok[it.id], byID[it.id]
			if bad := byValue[string(it.value)]; len(bad) > 0 {
				problem("valid event %s dead-lettered as invalid_event (%s, source %s)", it.id, bad[0].lastError, bad[0].source)
				dls = append(dls, bad...)
			}
			if n > 1 {
				t.duplicates += n - 1
			}
			for _, d := range dls {
				if d.reason != "retries_exhausted" || (d.lastError != "http_500" && d.lastError != "timeout") {
					problem("%s dead-lettered as %s (last error %s, source %s): only retries_exhausted after 500s is expected", it.id, d.reason, d.lastError, d.source)
				} else if rc.attempts[it.id] < attemptsPerEvent {
					problem("%s dead-lettered as retries_exhausted after %d attempts reached the receiver", it.id, rc.attempts[it.id])
				}
			}
			switch {
			case n > 0:
				t.delivered++
				if len(dls) > 0 {
					t.deliveredAndDLQ++
				}
			case len(dls) > 0:
				t.deadLettered++
				t.dlqDuplicates += len(dls) - 1
				t.reasons[dls[0].reason]++
			default:
				t.lost++
				t.lostIDs = append(t.lostIDs, it.id)
			}
		}
	}
	for id, dls := range byID {
		if _, ok := p.byID[id]; !ok && dls[0].reason != "invalid_event" {
			problem("dead letter with webhook-id %s (%s, source %s) is no produced event", id, dls[0].reason, dls[0].source)
		}
	}
	for v, dls := range byValue {
		if _, ok := p.byValue[v]; !ok {
			problem("invalid_event dead letter %q (source %s) is no produced record", truncate(v, 80), dls[0].source)
		}
	}
	return t
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// inputTopics are the topics the plan produces to.
func inputTopics() []string {
	names := make([]string, 0, len(topics))
	for _, tp := range topics {
		if !slices.Contains(names, tp.topic) {
			names = append(names, tp.topic)
		}
	}
	return names
}
