package pipeline

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// parking counts the jobs parked (waiting for a busy endpoint's place
// without a delivery slot): at most max in all and half of that for one
// endpoint, so that one slow endpoint cannot take every place. The waiting
// itself, first come first served, is admission's (Admitter.Wait). It is
// safe for concurrent use.
type parking struct {
	max    int
	parked prometheus.Gauge

	mu sync.Mutex
	n  int
	by map[string]int // parked jobs by endpoint
}

func newParking(max int, parked prometheus.Gauge) *parking {
	return &parking{max: max, parked: parked, by: map[string]int{}}
}

// enter counts a job parked for ep, if there is room, and reports whether
// there was.
func (pk *parking) enter(ep string) bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.n >= pk.max || pk.by[ep] >= max(1, pk.max/2) {
		return false
	}
	pk.n++
	pk.by[ep]++
	pk.parked.Inc()
	return true
}

// leave ends a count taken by enter.
func (pk *parking) leave(ep string) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.n--
	if pk.by[ep]--; pk.by[ep] == 0 {
		delete(pk.by, ep)
	}
	pk.parked.Dec()
}

// len is how many jobs are parked.
func (pk *parking) len() int {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return pk.n
}
