// Package backoff waits between attempts, and between paced steps, the
// way every wait in feedbackd must: cut short when the context ends.
package backoff

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx ends if that comes first, and reports
// whether it waited the whole of d: false means ctx ended (ctx.Err() says
// why) and the caller should stop. A d of zero or less returns at once;
// when ctx has ended too, either answer may come. It leaves no timer
// behind.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
