// Package retry decides when a failed delivery is tried again and names the
// topics that carry that decision through Kafka; the state on a retry
// record is header.Retry.
//
// Pending retries live in tiered topics, one per distinct delay of the
// schedule ("feedback.retry.5s", "feedback.retry.1h", ...). Every record in a
// tier waits about the same time, so a partition's records come due roughly
// in order and a record due in an hour never sits in front of one due in
// five seconds.
package retry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Policy is the retry schedule. The zero Jitter means exact delays.
type Policy struct {
	// Schedule[n] is the delay after the (n+1)th failed attempt; an event
	// gets len(Schedule)+1 attempts in all.
	Schedule []time.Duration
	// Jitter shortens each delay by a random fraction in [0, Jitter), so
	// that endpoints recovering from an outage are not hit all at once.
	Jitter float64
	// Rand returns a float in [0,1); nil means math/rand/v2.
	Rand func() float64
}

// Validate reports a schedule that cannot work.
func (p Policy) Validate() error {
	if len(p.Schedule) == 0 {
		return fmt.Errorf("needs at least one delay")
	}
	for i, d := range p.Schedule {
		if d < time.Second {
			return fmt.Errorf("delay %d (%s) is under 1s", i+1, d)
		}
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		return fmt.Errorf("jitter %v must be in [0, 1)", p.Jitter)
	}
	return nil
}

// MaxAttempts is how many attempts an event gets before it is dead-lettered.
func (p Policy) MaxAttempts() int { return len(p.Schedule) + 1 }

// Tiers returns the distinct delays of the schedule, shortest first.
func (p Policy) Tiers() []time.Duration {
	t := slices.Clone(p.Schedule)
	slices.Sort(t)
	return slices.Compact(t)
}

// Next returns the tier and the delay for the retry after attempts failed
// attempts, the last of which asked to wait retryAfter (0 if it did not).
// Retry-After is honoured up to the longest delay of the schedule: the
// retry waits for at least min(retryAfter, longest tier). ok is false when
// the schedule is exhausted.
func (p Policy) Next(attempts int, retryAfter time.Duration) (tier, delay time.Duration, ok bool) {
	if attempts < 1 || attempts >= p.MaxAttempts() {
		return 0, 0, false
	}
	tier = p.TierFor(max(p.Schedule[attempts-1], retryAfter))
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	delay = tier - time.Duration(float64(tier)*p.Jitter*r())
	return tier, max(delay, min(retryAfter, tier)), true
}

// TierFor returns the shortest tier of at least d, or the longest tier.
func (p Policy) TierFor(d time.Duration) time.Duration {
	tiers := p.Tiers()
	for _, t := range tiers {
		if t >= d {
			return t
		}
	}
	return tiers[len(tiers)-1]
}

// Span is the sum of the schedule's delays: about how long an event waits
// for retries in all.
func (p Policy) Span() time.Duration {
	var s time.Duration
	for _, d := range p.Schedule {
		s += d
	}
	return s
}

// TierName is the compact form of a tier delay used in topic names: 5s, 2m,
// 1h, 1h30m.
func TierName(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Topic is the retry topic of a tier.
func Topic(prefix string, tier time.Duration) string { return prefix + "." + TierName(tier) }
