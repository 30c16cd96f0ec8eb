// Package event parses feedback events, the records upstream senders produce,
// and renders the webhook body receivers get.
//
// Parse validates a record value against schemas/feedback-event.schema.json
// and extracts the fields feedbackd routes on; a hand-written check of the
// same rules spares valid records the generic validator. Body then edits
// the original bytes: it removes eventId and fills in eventType, and changes
// nothing else, so field order, number formatting and unknown fields reach
// the receiver as the sender wrote them.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/feedbackd/feedbackd/schemas"
)

// DefaultType is the eventType receivers get when the event has none.
const DefaultType = "message.feedback"

// MaxSize is the largest record value Parse accepts.
const MaxSize = 256 << 10

// Statuses that are delivered; any other feedbackStatus.value is skipped.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusBounce    = "bounce"
	StatusError     = "error"
)

// Deliverable reports whether events with this status are sent to webhooks.
func Deliverable(status string) bool {
	switch status {
	case StatusSent, StatusDelivered, StatusBounce, StatusError:
		return true
	}
	return false
}

// Event is a validated feedback event. Raw is the record value it was parsed
// from and must not be modified while the Event is in use.
type Event struct {
	Raw        []byte
	ID         string // eventId, "" when the sender did not set one
	RequestID  string
	Org        string
	SandboxID  string
	Channel    string
	CampaignID string
	Status     string
}

// Key is the config key of the event's tenant: "<imsOrg>/<sandboxId>".
func (e *Event) Key() string { return e.Org + "/" + e.SandboxID }

// InvalidError says why a record is not a valid feedback event. Field is the
// dotted path of the offending field ("" for the document as a whole).
type InvalidError struct {
	Reason  string // "invalid_json", "too_large", "duplicate_key", "schema", or "webhook_id" (a record header)
	Field   string
	Keyword string // the schema keyword that failed: required, type, pattern...
	Message string // for people; may quote part of the event
}

// Class is the error in a fixed vocabulary, fit for a dead-letter header:
// "invalid_json", "too_large", "webhook_id", "duplicate_key: <field>" or
// "schema: <field>: <keyword>". It never quotes the event.
func (e *InvalidError) Class() string {
	switch e.Reason {
	case "schema":
		return "schema: " + e.Field + ": " + e.Keyword
	case "duplicate_key": // the field is one of routedMembers
		return e.Reason + ": " + e.Field
	}
	return e.Reason
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Reason + ": " + e.Message
	}
	return e.Reason + ": " + e.Field + ": " + e.Message
}

var eventSchema = schemas.MustCompile(schemas.Event)

// Parse validates raw against the event schema and returns the event. An
// invalid record yields an *InvalidError. Parse is safe for concurrent use.
//
// A hand-written check of the same rules decides first; only a record it
// does not accept goes through the JSON Schema validator, which finds the
// reason. Rejects are rare, so only they pay for the validator.
func Parse(raw []byte) (*Event, error) {
	if len(raw) > MaxSize {
		return nil, &InvalidError{Reason: "too_large", Message: fmt.Sprintf("%d bytes, limit %d", len(raw), MaxSize)}
	}
	if ev, ok := parseFast(raw); ok {
		return ev, nil
	}
	return parseSchema(raw)
}

// parseSchema is Parse by the JSON Schema validator alone: the reference
// that parseFast must agree with.
func parseSchema(raw []byte) (*Event, error) {
	if len(raw) > MaxSize {
		return nil, &InvalidError{Reason: "too_large", Message: fmt.Sprintf("%d bytes, limit %d", len(raw), MaxSize)}
	}
	if !json.Valid(raw) {
		return nil, &InvalidError{Reason: "invalid_json", Message: syntaxError(raw)}
	}
	if field := duplicateMember(raw); field != "" {
		return nil, &InvalidError{Reason: "duplicate_key", Field: field,
			Message: "given more than once: feedbackd routes on it, and receivers may read another copy than feedbackd"}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &InvalidError{Reason: "invalid_json", Message: err.Error()}
	}
	if err := eventSchema.Validate(doc); err != nil {
		return nil, schemaError(err)
	}
	// The schema guarantees every type assertion below.
	m := doc.(map[string]any)
	ev := &Event{
		Raw:        raw,
		RequestID:  m["requestId"].(string),
		Org:        m["imsOrg"].(string),
		SandboxID:  m["sandbox"].(map[string]any)["id"].(string),
		Channel:    m["channel"].(string),
		CampaignID: m["messageExecution"].(map[string]any)["campaignID"].(string),
		Status:     m["messageDeliveryFeedback"].(map[string]any)["feedbackStatus"].(map[string]any)["value"].(string),
	}
	if id, ok := m["eventId"].(string); ok {
		ev.ID = id
	}
	return ev, nil
}

func syntaxError(raw []byte) string {
	var v any
	err := json.Unmarshal(raw, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if err != nil {
		return err.Error()
	}
	return "not JSON"
}

func schemaError(err error) error {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		sortCauses(ve)
	}
	field, keyword, msg := schemas.Explain(err)
	return &InvalidError{Reason: "schema", Field: field, Keyword: keyword, Message: msg}
}

// sortCauses orders the causes at every level of a validation error by
// instance location, then schema keyword. The validator visits properties
// in map order, so a record with faults in several fields would otherwise
// be reported (and dead-lettered) under a different one from run to run.
func sortCauses(ve *jsonschema.ValidationError) {
	slices.SortStableFunc(ve.Causes, func(a, b *jsonschema.ValidationError) int {
		if c := slices.Compare(a.InstanceLocation, b.InstanceLocation); c != 0 {
			return c
		}
		return slices.Compare(a.ErrorKind.KeywordPath(), b.ErrorKind.KeywordPath())
	})
	for _, c := range ve.Causes {
		sortCauses(c)
	}
}

// routedMembers are the members feedbackd reads from an event, by the
// object that holds them ("" is the event itself): each may appear once.
var routedMembers = map[string][]string{
	"":                                       {"eventId", "requestId", "imsOrg", "sandbox", "channel", "eventType", "messageExecution", "messageDeliveryFeedback"},
	"sandbox":                                {"id", "name"},
	"messageExecution":                       {"campaignID"},
	"messageDeliveryFeedback":                {"feedbackStatus"},
	"messageDeliveryFeedback.feedbackStatus": {"value"},
}

// duplicateMember returns the dotted path of the first routed member that
// raw, a valid JSON text, holds twice, or "".
func duplicateMember(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func(path string) string // reads one value
	walk = func(path string) string {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		switch t {
		case json.Delim('['):
			for dec.More() {
				if dup := walk("[]"); dup != "" {
					return dup
				}
			}
			_, _ = dec.Token()
		case json.Delim('{'):
			names, routed := routedMembers[path]
			seen := map[string]bool{}
			for dec.More() {
				t, _ := dec.Token()
				name, _ := t.(string)
				field := name
				if path != "" {
					field = path + "." + name
				}
				if routed && slices.Contains(names, name) {
					if seen[name] {
						return field
					}
					seen[name] = true
				} else {
					field = "[]" // nothing below is routed
				}
				if dup := walk(field); dup != "" {
					return dup
				}
			}
			_, _ = dec.Token()
		}
		return ""
	}
	return walk("")
}

// DeriveID returns the webhook-id of an event without eventId: stable for a
// given record, so retries and replays of it carry the same id.
func DeriveID(topic string, partition int32, offset int64) string {
	sum := sha256.Sum256([]byte(topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)))
	return "msg_" + hex.EncodeToString(sum[:16])
}
