package replay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/event"
	"github.com/feedbackd/feedbackd/pkg/header"
)

// recoveryBody is the body of POST /v1/webhooks/{imsOrg}/{sandboxId}/recover.
type recoveryBody struct {
	Since    string   `json:"since"`
	Until    string   `json:"until"`
	Statuses []string `json:"statuses"`
	DryRun   bool     `json:"dryRun"`
	Rate     *float64 `json:"rate"` // events per second; absent: no limit
}

// ParseRecovery reads the body of a recovery request for one tenant config
// and returns it resolved at time now (Recovery). Its errors are
// *RequestError naming the field: a body that is not a JSON object of the
// known fields, a missing or unreadable since or until, since not before
// until, an unknown status, a rate that is not above 0.
func ParseRecovery(org, sandbox string, body []byte, now time.Time) (Request, error) {
	var b recoveryBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return Request{}, bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, &RequestError{"", "the body must be one JSON object"}
	}
	if b.Rate != nil && !(*b.Rate > 0) {
		return Request{}, &RequestError{"rate", "must be above 0 events per second (leave it out for no limit)"}
	}
	req := Request{Source: SourceInput, Org: org, Sandbox: sandbox, Since: b.Since, Until: b.Until, Statuses: b.Statuses, DryRun: b.DryRun}
	if b.Rate != nil {
		req.Rate = *b.Rate
	}
	return req.Recovery(now)
}

// bodyError names the field of a JSON decoding error where it can.
func bodyError(err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return &RequestError{te.Field, "must be " + jsonType(te.Type.String())}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &RequestError{field, "is not a field of a recovery request (since, until, statuses, dryRun, rate)"}
	}
	return &RequestError{"", "the body is not a JSON recovery request: " + err.Error()}
}

func jsonType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "[]string":
		return "an array of strings"
	case "bool":
		return "true or false"
	case "float64":
		return "a number"
	}
	return "of another type"
}

// Recovery validates a recovery request and returns it resolved at time
// now, as its job keeps it: Since and Until as RFC 3339 times (an Until
// after now is now: the window ends where the topics do), Statuses sorted
// without repeats, and a new Job id unless it has one. Its errors are
// *RequestError.
func (r Request) Recovery(now time.Time) (Request, error) {
	switch {
	case r.Source != SourceInput:
		return Request{}, &RequestError{"source", "a recovery reads the input topics"}
	case r.Org == "":
		return Request{}, &RequestError{"imsOrg", "required"}
	case r.Sandbox == "":
		return Request{}, &RequestError{"sandboxId", "required"}
	case r.Channel != "" || r.Status != "" || r.Reason != "" || r.Again != "":
		return Request{}, &RequestError{"source", "a recovery takes no dead-letter filters (channel, status, reason, again)"}
	}
	since, err := bound("since", r.Since, now)
	if err != nil {
		return Request{}, err
	}
	until, err := bound("until", r.Until, now)
	if err != nil {
		return Request{}, err
	}
	if until.After(now) {
		until = now
	}
	if !since.Before(until) {
		return Request{}, &RequestError{"since", fmt.Sprintf("must be before until (%s, or now if until is later)", until.UTC().Format(time.RFC3339))}
	}
	statuses := slices.Clone(r.Statuses)
	slices.Sort(statuses)
	statuses = slices.Compact(statuses)
	for _, s := range statuses {
		if !event.Deliverable(s) {
			return Request{}, &RequestError{"statuses", fmt.Sprintf("%q is not a feedback status feedbackd delivers (sent, delivered, bounce, error)", s)}
		}
	}
	if r.Rate < 0 {
		return Request{}, &RequestError{"rate", "must not be negative"}
	}
	r.Since, r.Until = formatBound(since), formatBound(until)
	if len(statuses) == 0 {
		statuses = nil
	}
	r.Statuses = statuses
	if r.Job == "" {
		r.Job = "rc-" + strings.ToLower(rand.Text()[:16])
	}
	return r, nil
}

// bound reads a required end of a recovery window.
func bound(field, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, &RequestError{field, "required: an RFC 3339 time such as 2026-12-01T10:00:00Z, or a duration ago (90m, 24h, 7d)"}
	}
	t, err := when(v, now)
	if err != nil {
		return time.Time{}, &RequestError{field, err.Error()}
	}
	return t, nil
}

// formatBound writes a window bound at the millisecond precision of record
// timestamps.
func formatBound(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// window returns a resolved recovery's bounds.
func (r Request) window() (since, until time.Time, err error) {
	if since, err = time.Parse(time.RFC3339, r.Since); err != nil {
		return since, until, &RequestError{"since", err.Error()}
	}
	if until, err = time.Parse(time.RFC3339, r.Until); err != nil {
		return since, until, &RequestError{"until", err.Error()}
	}
	return since, until, nil
}

// windowSource is what a recovery reads: the records of one tenant config
// in a time window of the input topics.
type windowSource struct {
	job          string
	inputs       []string
	org, sandbox string
	since, until time.Time
	statuses     []string // empty: every status feedbackd delivers
}

var _ source = (*windowSource)(nil)

func newWindowSource(req Request, opts Options) (*windowSource, error) {
	since, until, err := req.window()
	if err != nil {
		return nil, err
	}
	if req.Job == "" || len(opts.InputTopics) == 0 {
		return nil, errors.New("a recovery needs its job id and the input topics")
	}
	return &windowSource{job: req.Job, inputs: opts.InputTopics, org: req.Org, sandbox: req.Sandbox,
		since: since, until: until, statuses: req.Statuses}, nil
}

func (s *windowSource) topics() []string { return s.inputs }

// reset starts a partition the job never read at the window's start (the
// first offset at or after since, the end if there is none), as bounds
// does.
func (s *windowSource) reset() kgo.Offset { return kgo.NewOffset().AfterMilli(s.since.UnixMilli()) }

func (s *windowSource) prepare(context.Context, []kgo.Opt) error { return nil }

// bounds finds the window's offsets by timestamp: from the first record at
// or after since to the first at or after until (the end offset where
// there is none). It also finds, from the oldest record each partition
// still holds, what retention removed of the window.
func (s *windowSource) bounds(ctx context.Context, adm *kadm.Client) (starts, limits map[tp]int64, reach []TopicReach, err error) {
	list := func(what string, ms int64) (kadm.ListedOffsets, error) {
		l, err := adm.ListOffsetsAfterMilli(ctx, ms, s.inputs...)
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("offsets of the input topics at %s: %w", what, err)
		}
		return l, nil
	}
	oldest, err := list("their oldest record", 0)
	if err != nil {
		return nil, nil, nil, err
	}
	first, err := list("since", s.since.UnixMilli())
	if err != nil {
		return nil, nil, nil, err
	}
	last, err := list("until", s.until.UnixMilli())
	if err != nil {
		return nil, nil, nil, err
	}
	starts, limits = map[tp]int64{}, map[tp]int64{}
	last.Each(func(o kadm.ListedOffset) {
		k := tp{o.Topic, o.Partition}
		limits[k] = o.Offset
		if f, ok := first.Lookup(o.Topic, o.Partition); ok {
			starts[k] = min(f.Offset, o.Offset)
		}
	})
	for _, topic := range s.inputs {
		reach = append(reach, s.reach(topic, oldest[topic]))
	}
	return starts, limits, reach, nil
}

// reach says what a topic still holds of the window, from the oldest
// record of each partition. A partition whose log starts after offset 0
// lost records to retention: if its oldest record is after since, the
// window up to that record was not reachable there (all of it, if retention
// left the partition empty).
func (s *windowSource) reach(topic string, oldest map[int32]kadm.ListedOffset) TopicReach {
	r := TopicReach{Topic: topic, Complete: true}
	var lostUntil time.Time
	for _, o := range oldest {
		held := time.Time{}
		if o.Timestamp >= 0 {
			held = time.UnixMilli(o.Timestamp).UTC()
			if r.Earliest.IsZero() || held.Before(r.Earliest) {
				r.Earliest = held
			}
		}
		if o.Offset <= 0 {
			continue // never truncated
		}
		if held.IsZero() { // emptied by retention
			held = s.until
		}
		if held.After(s.since) && held.After(lostUntil) {
			lostUntil = held
		}
	}
	if !lostUntil.IsZero() {
		if lostUntil.After(s.until) {
			lostUntil = s.until
		}
		r.Complete = false
		r.Unreachable = &Window{Since: s.since.UTC(), Until: lostUntil}
	}
	return r
}

// consider returns the re-injection of an input record of the tenant's in
// the window, with the webhook-id the pipeline gave it and the job's
// recover-job header, or nil. A record whose key follows the
// "<imsOrg>/<sandboxId>" convention for another tenant is passed over
// without parsing its value; the others are kept when their event is the
// tenant's (its imsOrg and sandbox.id), valid and of a status asked for.
// Copies an earlier recovery made are not resent: their original is.
func (s *windowSource) consider(rec *kgo.Record, c *Progress) ([]*kgo.Record, error) {
	c.Scanned++
	if rec.Timestamp.Before(s.since) || !rec.Timestamp.Before(s.until) {
		return nil, nil
	}
	if org, sb, ok := strings.Cut(string(rec.Key), "/"); ok && event.IsTenantID(org) && event.IsTenantID(sb) &&
		(org != s.org || sb != s.sandbox) {
		return nil, nil
	}
	ev, err := event.Parse(rec.Value)
	if err != nil || ev.Org != s.org || ev.SandboxID != s.sandbox || !event.Deliverable(ev.Status) ||
		(len(s.statuses) > 0 && !slices.Contains(s.statuses, ev.Status)) {
		return nil, nil
	}
	id, ok := webhookID(rec, ev)
	if !ok { // the pipeline dead-lettered it: it was never delivered
		return nil, nil
	}
	c.Matched++
	if header.Get(rec.Headers, header.RecoverJob) != "" {
		c.Skipped++
		return nil, nil
	}
	h := append(header.Foreign(rec.Headers),
		kgo.RecordHeader{Key: header.WebhookID, Value: []byte(id)},
		kgo.RecordHeader{Key: header.RecoverJob, Value: []byte(s.job)})
	return []*kgo.Record{{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: h}}, nil
}

// webhookID is the webhook-id the pipeline gives an input record's event
// (pipeline decode): its eventId, or the valid webhook-id header a replay
// set, or the id derived from the record's coordinates. ok is false for a
// record whose webhook-id header is not a valid id (the pipeline
// dead-letters it as invalid).
func webhookID(rec *kgo.Record, ev *event.Event) (id string, ok bool) {
	h := header.Get(rec.Headers, header.WebhookID)
	switch {
	case h != "" && !event.IsEventID(h):
		return "", false
	case ev.ID != "":
		return ev.ID, true
	case h != "":
		return h, true
	}
	return event.DeriveID(rec.Topic, rec.Partition, rec.Offset), true
}
