package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
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
// cannot be read).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// memstats are the Go runtime's allocation counters of the process.
type memstats struct{ mallocs, bytes float64 }

// memstats reads go_memstats_mallocs_total and go_memstats_alloc_bytes_total
// from the daemon's /metrics (zero if it cannot).
func (d *daemonProc) memstats(c *http.Client) memstats {
	var m memstats
	resp, err := c.Get(d.api + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			m.mallocs, _ = strconv.ParseFloat(val, 64)
		case "go_memstats_alloc_bytes_total":
			m.bytes, _ = strconv.ParseFloat(val, 64)
		}
	}
	return m
}

// peakRSS is the process's VmHWM in MiB.
func (d *daemonProc) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
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

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores %s, %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}
