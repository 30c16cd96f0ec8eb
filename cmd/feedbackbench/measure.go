package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// proc is a process whose CPU time the bench reads.
type proc struct {
	name string
	pid  int
}

// othersCPU is the CPU seconds so far of each process sharing the machine.
func (e *env) othersCPU() map[string]float64 {
	m := map[string]float64{}
	for _, p := range e.others {
		m[p.name] = procCPU(p.pid)
	}
	return m
}

// cpu is the process's user+system CPU time so far, in seconds.
func (d *daemonProc) cpu() float64 { return procCPU(d.cmd.Process.Pid) }

// procCPU is a process's user+system CPU time so far, in seconds (0 if it
// cannot be read), from /proc/<pid>/stat through procfs.
func procCPU(pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return st.CPUTime()
}

// memstats are the Go runtime's allocation counters of the process, and
// what it holds now: heap in use, goroutine stacks, goroutines, and the
// deliveries in flight (records holding a delivery slot); and its delivery
// connection counters.
type memstats struct {
	mallocs, bytes                     float64
	heap, stacks, goroutines, inflight float64
	dials, evicted                     float64
	dialsKnown                         bool    // feedbackd_delivery_dials_total was there
	gcs                                float64 // garbage collections so far (go_gc_duration_seconds' count)
	gcsKnown                           bool
}

// minus is what m counted since m0.
func (m memstats) minus(m0 memstats) memstats {
	return memstats{mallocs: m.mallocs - m0.mallocs, bytes: m.bytes - m0.bytes,
		dials: m.dials - m0.dials, evicted: m.evicted - m0.evicted}
}

// memstats reads go_memstats_* and the gauges above from the daemon's
// /metrics (zero if it cannot).
func (d *daemonProc) memstats(c *http.Client) memstats {
	resp, err := c.Get(d.api + "/metrics")
	if err != nil {
		return memstats{}
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return memstats{}
	}
	value := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0
		}
		if m := f.GetMetric()[0]; m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	gcs, gcsKnown := 0.0, false
	if f := fams["go_gc_duration_seconds"]; f != nil && len(f.GetMetric()) > 0 && f.GetMetric()[0].GetSummary() != nil {
		gcs, gcsKnown = float64(f.GetMetric()[0].GetSummary().GetSampleCount()), true
	}
	return memstats{
		mallocs: value("go_memstats_mallocs_total"), bytes: value("go_memstats_alloc_bytes_total"),
		heap: value("go_memstats_heap_inuse_bytes"), stacks: value("go_memstats_stack_inuse_bytes"),
		goroutines: value("go_goroutines"), inflight: value("feedbackd_inflight_deliveries"),
		dials: value("feedbackd_delivery_dials_total"), evicted: value("feedbackd_delivery_connections_evicted_total"),
		dialsKnown: fams["feedbackd_delivery_dials_total"] != nil,
		gcs:        gcs, gcsKnown: gcsKnown,
	}
}

// memPeak is what feedbackd held when its heap and stacks together were
// largest, of the samples taken, and the most deliveries in flight seen.
type memPeak struct {
	HeapMiB      float64 `json:"heap_mib"`
	StacksMiB    float64 `json:"stacks_mib"`
	Goroutines   float64 `json:"goroutines"`
	Inflight     float64 `json:"inflight"`      // at that sample
	MostInflight float64 `json:"most_inflight"` // of all samples
	RSSMiB       float64 `json:"rss_mib"`       // the largest RSS of all samples
}

func (p *memPeak) add(m memstats, rssMiB float64) {
	p.MostInflight = max(p.MostInflight, m.inflight)
	p.RSSMiB = max(p.RSSMiB, rssMiB)
	if (m.heap+m.stacks)/(1<<20) > p.HeapMiB+p.StacksMiB {
		p.HeapMiB, p.StacksMiB, p.Goroutines, p.Inflight = m.heap/(1<<20), m.stacks/(1<<20), m.goroutines, m.inflight
	}
}

// merge makes p the larger of the peaks of p and q.
func (p *memPeak) merge(q memPeak) {
	most, rss := max(p.MostInflight, q.MostInflight), max(p.RSSMiB, q.RSSMiB)
	if q.HeapMiB+q.StacksMiB > p.HeapMiB+p.StacksMiB {
		*p = q
	}
	p.MostInflight, p.RSSMiB = most, rss
}

// rss is the process's resident set size (VmRSS) in MiB (0 if it cannot be
// read).
func (d *daemonProc) rss() float64 {
	return d.status(func(st procfs.ProcStatus) uint64 { return st.VmRSS })
}

// peakRSS is the process's peak resident set size (VmHWM) in MiB (0 if it
// cannot be read).
func (d *daemonProc) peakRSS() float64 {
	return d.status(func(st procfs.ProcStatus) uint64 { return st.VmHWM })
}

// status is the field of /proc/<pid>/status (through procfs) that bytes
// picks, in MiB; 0 if it cannot be read.
func (d *daemonProc) status(bytes func(procfs.ProcStatus) uint64) float64 {
	p, err := procfs.NewProc(d.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return float64(bytes(st)) / (1 << 20)
}

// profile saves a CPU profile of feedbackd taken over d, and halfway
// through it a heap and a goroutine profile (file.heap, file.goroutine):
// what the deliveries in flight hold at that moment.
func (e *env) profile(file string, d time.Duration) error {
	snap := make(chan error, 1)
	go func() {
		time.Sleep(d / 2)
		err := e.saveProfile(file+".heap", "heap", 0)
		if gerr := e.saveProfile(file+".goroutine", "goroutine", 0); err == nil {
			err = gerr
		}
		snap <- err
	}()
	err := e.saveProfile(file, "profile", d)
	if serr := <-snap; err == nil {
		err = serr
	}
	if err == nil {
		logf("pprof: CPU profile of feedbackd in %s, heap and goroutines halfway in %[1]s.heap and %[1]s.goroutine (go tool pprof -top %s %[1]s)", file, e.o.feedbackd)
	}
	return err
}

// saveProfile writes feedbackd's profile named kind (seconds long when
// d > 0) to file.
func (e *env) saveProfile(file, kind string, d time.Duration) error {
	c := &http.Client{Timeout: d + 30*time.Second}
	u := fmt.Sprintf("http://%s/debug/pprof/%s", e.daemon.pprof, kind)
	if d > 0 {
		u += fmt.Sprintf("?seconds=%d", int(d.Seconds()))
	}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s profile: %s", kind, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// machine names the machine: its cores, CPU model (cpuModel) and
// platform.
func machine() string {
	return fmt.Sprintf("%d cores %s, %s/%s", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH)
}

// fileLimit is the open-file limit (RLIMIT_NOFILE) of this process, which
// the receiver, redis-server and feedbackd inherit, and what the run needs.
type fileLimit struct {
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
	// Need is about what the busiest process needs (filesNeeded), Least
	// what it cannot do without (filesLeast).
	Need  uint64 `json:"need"`
	Least uint64 `json:"least"`
	// Receiver and Feedbackd are their soft limits as read back from
	// /proc/<pid>/limits (0 if unknown).
	Receiver  uint64 `json:"receiver"`
	Feedbackd uint64 `json:"feedbackd"`
	Err       string `json:"error,omitempty"`
}

// filesNeeded is about how many descriptors the busiest process (the
// receiver, or feedbackd) may hold without feedbackd closing an idle
// connection for want of them: a connection per slot of the phase that
// runs; with more than one host, the idle connections feedbackd keeps to
// the other hosts beside them (up to 4,096, or the slots if more: what
// pkg/deliver keeps idle over all hosts, as feedbackd configures it; to one
// host it dials only when none is idle); a listener per host; and a
// thousand for the rest (Kafka, Redis, files). Each phase's connections
// are closed before the next starts, so phases do not add up. Below it
// but at least filesLeast, feedbackd stays within its limit by closing
// idle connections (it keeps in use and idle ones together under the
// limit less a thousand): more dialing, no failures.
func filesNeeded(o options) uint64 {
	idle := 0
	if o.hosts > 1 {
		idle = min(max(4096, o.concurrency), o.concurrency*(o.hosts-1))
	}
	return filesLeast(o) + uint64(idle)
}

// filesLeast is what the run needs for a connection per slot: below it,
// connections may fail with "too many open files".
func filesLeast(o options) uint64 { return uint64(o.concurrency + o.hosts + 1000) }

// short says whether the limit is below what the run needs to keep every
// connection it could use (filesNeeded).
func (l fileLimit) short() bool { return l.Soft < l.Need }

func (l fileLimit) String() string {
	s := fmt.Sprintf("limit %d (hard %d)", l.Soft, l.Hard)
	if l.Feedbackd > 0 {
		s += fmt.Sprintf(", feedbackd's %d, the receiver's %d", l.Feedbackd, l.Receiver)
	}
	s += fmt.Sprintf("; the run needs about %d", l.Need)
	if l.Err != "" {
		s += " (" + l.Err + ")"
	}
	switch {
	case l.Soft < l.Least:
		s += fmt.Sprintf(": WARNING: below what --concurrency needs (%d), connections may fail with \"too many open files\" and the figures be wrong; raise the hard limit (ulimit -Hn, as root) or lower --concurrency", l.Least)
	case l.short():
		s += fmt.Sprintf(" to keep every idle connection to the other hosts (%d for a connection per slot): feedbackd closes idle ones to stay within its limit, and dials more", l.Least)
	}
	return s
}

// openFilesLimit is the process's soft open-file limit (0 if unknown).
func openFilesLimit(pid int) uint64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	l, err := p.Limits()
	if err != nil {
		return 0
	}
	return l.OpenFiles
}
