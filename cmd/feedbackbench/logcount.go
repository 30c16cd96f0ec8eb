package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// logCount passes feedbackd's log through to w and counts its warnings and
// errors by message, across restarts, so that the report says whether
// feedbackd complained during the run (a "dependency down" on a starved
// machine, say) without anyone reading the log.
type logCount struct {
	w io.Writer

	mu      sync.Mutex
	partial []byte         // an unfinished line
	counts  map[string]int // "ERROR: msg" -> lines
}

func newLogCount(w io.Writer) *logCount { return &logCount{w: w, counts: map[string]int{}} }

// Write counts the complete lines of p and writes p to the wrapped writer.
func (l *logCount) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.count(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	l.partial = slices.Clip(l.partial)
	l.mu.Unlock()
	return l.w.Write(p)
}

// expected are the warnings every start of feedbackd logs with the
// bench's settings (plain http to loopback, --pprof): not counted.
var expected = []string{"webhook URLs may use plain http", "serving Go profiles"}

func (l *logCount) count(line []byte) {
	var rec struct{ Level, Msg string }
	if json.Unmarshal(line, &rec) != nil || (rec.Level != "WARN" && rec.Level != "ERROR") {
		return
	}
	for _, e := range expected {
		if strings.HasPrefix(rec.Msg, e) {
			return
		}
	}
	l.counts[rec.Level+": "+rec.Msg]++
}

// summary is one line per message, errors first, most frequent first:
// "3 x ERROR: dependency down: ...". Empty when there was none.
func (l *logCount) summary() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for msg, n := range l.counts {
		out = append(out, fmt.Sprintf("%d x %s", n, msg))
	}
	slices.SortFunc(out, func(a, b string) int {
		ea, eb := strings.Contains(a, " x ERROR: "), strings.Contains(b, " x ERROR: ")
		if ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}
