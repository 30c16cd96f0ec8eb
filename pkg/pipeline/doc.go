// Package pipeline consumes feedback events and retry records, delivers
// them, and settles each one before its offset is committed.
//
// One franz-go group client reads the input topics and every retry tier.
// A record goes through the stages the README draws:
//
//	ingest   Run polls, dispatch tracks the offset and starts a job   pipeline.go
//	decode   the record becomes an event and its delivery state       process.go
//	route    the tenant's config: skip, dead-letter or go on          process.go
//	admit    the endpoint's in-flight share and circuit breaker       process.go
//	claim    dedupe: was this event delivered, or is it in flight?    process.go
//	attempt  render, sign and POST (package deliver)                  process.go
//	judge    what the answer means: delivered, retried, dead-lettered process.go
//	clock    tell the failure clock; disable a config failing too long disable.go
//	settle   carry out the Outcome: produce, record, count, log, mark settle.go
//
// With Options.Tracer each job is a span tree (process, route, POST,
// settle) in the trace of the record's traceparent: trace.go.
//
// Every stage up to attempt only decides: process hands an Outcome on (to
// settle, on the job's goroutine or on the one that waited for a slow
// answer: see Sender), and settle is the one function that carries any
// Outcome out. The decisions are
// plain functions of what the stages learned (routed, admitted, claimed,
// judged), table-tested without Kafka, Redis or HTTP.
//
// # Glossary
//
//   - job: one record on its way through the stages, from dispatch to
//     settle.
//   - slot: what a job takes to run. There are Concurrency delivery
//     slots; after its attempt a job trades its delivery slot for a
//     settling slot (as many again, at most 1,024), so that producing a
//     retry or dead letter does not keep the next delivery waiting. Polls
//     ask for no more records than there are free delivery slots: that is
//     the back-pressure that stops fetching. A job gives up its slot once its
//     outcome records (and, delivered, its dedupe record) are handed to
//     the Kafka client (and the dedupe store), and counts as running (a
//     drain waits for it) until they are acknowledged and its offset is
//     marked; meanwhile only its offset and records are held
//     (unsettled). The outcomes producer's buffer (franz-go's
//     MaxBufferedRecords, 10,000 records) bounds how many wait for Kafka;
//     those waiting for Redis are bounded by time (a dedupe batch has its
//     answer or its error within 5 s).
//   - place: one of an endpoint's in-flight attempts (package admission).
//     A job whose endpoint has no free place waits for one, first come
//     first served.
//   - park: to wait for a place without a delivery slot (at most MaxParked
//     jobs, one endpoint half of them). A job that cannot park waits with
//     its slot, or is deferred if its endpoint is slow.
//   - hold: a retry record read before it is due is held in memory, with
//     no slot, and its partition paused until it is (hold.go).
//   - defer: to put an event back in a retry tier without an attempt
//     (breaker open, endpoint busy and slow, or its claim held elsewhere).
//     Deferrals do not use up the retry schedule.
//   - retry: to put an event back in a retry tier after a failed attempt.
//   - failure clock: per config, since when its attempts have failed with
//     no success (package failclock); after delivery.disable_after the
//     config is disabled and its events dead-lettered as endpoint_disabled.
//   - claim: a short dedupe lease on an event's key for one attempt, taken
//     only for records that may have been delivered before.
//   - settled: the record's outcome is carried out (every produce
//     acknowledged, or for DeadLetterLost refused for good); its offset may
//     be committed. An abandoned record is
//     not settled: it is read again after a restart or by the partition's
//     next owner.
//
// Log lines use snake_case keys; the same key means the same thing in every
// line: webhook_id, source, org, sandbox, channel, status, attempt,
// http_status, error (in a line about an event, the classified error of its
// last attempt or of why it failed; elsewhere an error value), detail (in a
// line about an event, an error value or what is wrong, for people), reason,
// retry_in (how long until the next try), topic.
package pipeline
