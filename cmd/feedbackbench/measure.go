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

// memstats are the Go runtime's allocation counters of the process.
type memstats struct{ mallocs, bytes float64 }

// minus is what m counted since m0.
func (m memstats) minus(m0 memstats) (mallocs, bytes float64) {
	return m.mallocs - m0.mallocs, m.bytes - m0.bytes
}

// memstats reads go_memstats_mallocs_total and go_memstats_alloc_bytes_total
// from the daemon's /metrics (zero if it cannot).
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
	counter := func(name string) float64 {
		if f := fams[name]; f != nil && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
		return 0
	}
	return memstats{mallocs: counter("go_memstats_mallocs_total"), bytes: counter("go_memstats_alloc_bytes_total")}
}

// peakRSS is the process's peak resident set size (VmHWM) in MiB (0 if it
// cannot be read), from /proc/<pid>/status through procfs.
func (d *daemonProc) peakRSS() float64 {
	p, err := procfs.NewProc(d.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return float64(st.VmHWM) / (1 << 20)
}

// profile saves a CPU profile of feedbackd taken over d.
func (e *env) profile(file string, d time.Duration) error {
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.daemon.pprof, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	logf("pprof: CPU profile of feedbackd in %s (go tool pprof -top %s %s)", file, e.o.feedbackd, file)
	return f.Close()
}

// machine names the machine: its cores, CPU model (from /proc/cpuinfo
// through procfs) and platform.
func machine() string {
	cpuModel := ""
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if cpus, err := fs.CPUInfo(); err == nil && len(cpus) > 0 {
			cpuModel = cpus[0].ModelName
		}
	}
	return fmt.Sprintf("%d cores %s, %s/%s", runtime.NumCPU(), cpuModel, runtime.GOOS, runtime.GOARCH)
}
