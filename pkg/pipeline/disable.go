package pipeline

import (
	"context"
	"strings"
	"time"

	"github.com/feedbackd/feedbackd/pkg/deliver"
	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// FailClock tracks, per config, how long its deliveries have failed with
// no success in between, shared by the instances (package failclock).
type FailClock interface {
	Success(org, sandboxID string, at time.Time)
	// Failure records a failed attempt or an event deferred by an open
	// breaker; disable is true, for one caller over all instances, once
	// the config has failed for After since since. changed is when the
	// config last changed: its clock starts again after a change.
	Failure(ctx context.Context, org, sandboxID string, changed, at time.Time) (since time.Time, disable bool)
	After() time.Duration
}

// disabling is why a job disables its config (job.disable): cause is the
// feedbackd_endpoints_disabled_total reason, reason the disabledReason.
// instead, for a config that kept failing, is the outcome the job had
// before the clock turned it into an endpoint_disabled dead letter: what
// is carried out if the config cannot be disabled.
type disabling struct {
	cause, reason string
	instead       *Outcome
}

// Causes of disabling a config.
const (
	causeGone    = "gone"    // the endpoint answered 410
	causeFailing = "failing" // no success for delivery.disable_after
)

// goneReason is the disabledReason of a config disabled after a 410.
const goneReason = "endpoint answered 410 Gone"

var disabledGone = &disabling{cause: causeGone, reason: goneReason}

// clocked tells the failure clock what became of the job, decided by
// admitted (deferred by an open breaker) or judged (an attempt), and
// returns the outcome: o, or a dead letter as endpoint_disabled if the
// clock says the config has failed for long enough. Either way, and after
// a 410, the job carries why its config is to be disabled: deadLetter
// disables it, publish tells the outcomes topic.
func (p *Pipeline) clocked(ctx context.Context, j *job, t *webhook.Target, o Outcome) Outcome {
	res := o.Attempt
	if res != nil && res.Verdict == deliver.Gone {
		j.disable = disabledGone
		return o
	}
	clock := p.opts.FailClock
	if clock == nil {
		return o
	}
	failed := o.Kind == Deferred && o.Reason == deferCircuitOpen
	if res != nil {
		switch res.Verdict {
		case deliver.Delivered:
			clock.Success(j.ev.Org, j.ev.SandboxID, time.Now())
			return o
		case deliver.Retry, deliver.Reject, deliver.Unreachable:
			failed = true
		}
	}
	if !failed {
		return o
	}
	since, disable := clock.Failure(ctx, j.ev.Org, j.ev.SandboxID, t.Config.UpdatedAt, time.Now())
	if !disable {
		return o
	}
	j.disable = &disabling{cause: causeFailing, reason: failingReason(since, clock.After()), instead: &o}
	d := deadLettered(dlq.ReasonEndpointDisabled, "")
	d.Attempt = res
	return d
}

// failingReason is the disabledReason of a config with no success since.
func failingReason(since time.Time, after time.Duration) string {
	return "no successful delivery since " + since.UTC().Format(time.RFC3339) +
		" (delivery.disable_after " + shortDuration(after) + ")"
}

// shortDuration is d without its zero minutes and seconds: 120h, 1h30m, 3s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// disableConfig disables the job's config if it is to be (job.disable),
// counts and logs it. If the config store fails, the job no longer
// carries it (no endpoint.disabled record) and disableConfig returns the
// outcome to carry out instead of the endpoint_disabled dead letter, if
// the clock made one: the next failure after the clock has run again for
// delivery.disable_after, or the next 410, tries again.
func (p *Pipeline) disableConfig(ctx context.Context, j *job) (instead *Outcome) {
	d := j.disable
	if d == nil {
		return nil
	}
	if err := p.configs.Disable(ctx, j.ev.Org, j.ev.SandboxID, d.reason); err != nil {
		p.log.Error("cannot disable config; its failure clock starts again", "org", j.ev.Org, "sandbox", j.ev.SandboxID, "reason", d.cause, "error", err)
		j.disable = nil
		return d.instead
	}
	p.metrics.disabled.WithLabelValues(d.cause).Inc()
	p.log.Warn("config disabled: its events are dead-lettered as endpoint_disabled until it is enabled again",
		"org", j.ev.Org, "sandbox", j.ev.SandboxID, "reason", d.cause, "detail", d.reason)
	return nil
}
