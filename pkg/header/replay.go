package header

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Replay is the history a replay job adds to each dead letter it
// re-injects into the input topics. The replay-* headers travel with the
// event through its retry records and into its next dead letter.
type Replay struct {
	Job            string    // id of the replay job that re-injected it
	Of             string    // "topic/partition/offset" of the dead letter it came from
	Count          int       // times it has been replayed, this one included
	PriorAttempts  int       // attempts made before this replay
	FirstAttemptAt time.Time // first attempt ever; zero if there was none
}

// Append appends the replay-* headers to h. The caller drops the ones h
// may have already (IsReplay).
func (r Replay) Append(h []kgo.RecordHeader) []kgo.RecordHeader {
	return append(h,
		hdr(ReplayJob, r.Job),
		hdr(ReplayOf, r.Of),
		hdr(ReplayCount, strconv.Itoa(r.Count)),
		hdr(ReplayPriorAttempts, strconv.Itoa(r.PriorAttempts)),
		hdr(ReplayFirstAttemptAt, FormatTime(r.FirstAttemptAt)),
	)
}

// ParseReplay reads the replay-* headers, ignoring the others; a record
// that was never replayed has none and parses to the zero Replay. It fails,
// naming the header, on a value it cannot read.
func ParseReplay(headers []kgo.RecordHeader) (Replay, error) {
	var (
		r   Replay
		err error
	)
	for _, h := range headers {
		v := string(h.Value)
		switch h.Key {
		case ReplayJob:
			r.Job = v
		case ReplayOf:
			r.Of = v
		case ReplayCount:
			r.Count, err = strconv.Atoi(v)
		case ReplayPriorAttempts:
			r.PriorAttempts, err = strconv.Atoi(v)
		case ReplayFirstAttemptAt:
			r.FirstAttemptAt, err = ParseTime(v)
		default:
			continue
		}
		if err != nil {
			return Replay{}, fmt.Errorf("replay header %s: %w", h.Key, err)
		}
	}
	return r, nil
}
