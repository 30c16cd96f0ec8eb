package pipeline

import (
	"time"

	"github.com/feedbackd/feedbackd/pkg/deliver"
)

// Kind is what becomes of a record.
type Kind int

// Kinds of Outcome. Every kind but Abandoned settles the record.
const (
	// Abandoned: not settled (the drain started, the partition was revoked,
	// or the attempt was cut short); the record is never committed here.
	Abandoned Kind = iota
	// Delivered: the endpoint accepted the event.
	Delivered
	// Duplicate: another copy of the event was delivered: nothing is sent
	// (dupAlready), or its schedule ran out but another copy made it
	// (dupExhausted, after an attempt), so it is not dead-lettered.
	Duplicate
	// Skipped: not delivered on purpose (Reason: a webhook.Skip* reason).
	Skipped
	// Retried: a failed attempt, put in the retry tier Tier, due After.
	Retried
	// Deferred: put in the retry tier Tier, due After, without an attempt
	// (Reason: a defer* reason).
	Deferred
	// DeadLettered: written to the dead-letter topic (Reason: a
	// dlq.Reason*).
	DeadLettered
	// DeadLetterLost: settle only: the broker refused the dead letter for
	// good, even without its value. The record stays at its source offset
	// until retention removes it; counted and alerted on.
	DeadLetterLost
)

var kindNames = [...]string{"abandoned", "delivered", "duplicate", "skipped", "retried", "deferred", "dead_lettered", "dead_letter_lost"}

func (k Kind) String() string { return kindNames[k] }

// Outcome is the decision of process for one record, carried out by settle.
type Outcome struct {
	Kind Kind
	// Reason says why, in a fixed vocabulary (metric labels): the skip,
	// defer or dead-letter reason (DeadLetterLost keeps the dead letter's),
	// or for Duplicate dupAlready or dupExhausted.
	Reason string
	// Tier and After: the retry tier and the delay until the next try
	// (Retried, Deferred).
	Tier, After time.Duration
	// Error is the classified error a dead letter records (dlq-last-error)
	// when it is not the last attempt's: why the event is invalid, the
	// config unusable, or the deferrals ran out.
	Error string
	// Err is the error behind the outcome, for the log line: what is wrong
	// with an invalid event (also the feedbackd_events_invalid_total
	// reason), or what the broker answered a lost dead letter.
	Err error
	// Attempt is the attempt this outcome came from, nil if none was made.
	Attempt *deliver.Result
}

// Why a valid event is a Duplicate.
const (
	dupAlready   = "already_delivered" // delivered within the dedupe window
	dupExhausted = "exhausted_but_delivered"
)

// Reasons an event is Deferred.
const (
	deferCircuitOpen  = "circuit_open"
	deferEndpointBusy = "endpoint_busy"
	deferInFlight     = "in_flight" // another attempt for the same event has its claim
)

var abandoned = Outcome{Kind: Abandoned}

func skipped(reason string) Outcome { return Outcome{Kind: Skipped, Reason: reason} }

func deadLettered(reason, class string) Outcome {
	return Outcome{Kind: DeadLettered, Reason: reason, Error: class}
}
