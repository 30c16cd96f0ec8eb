package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// logCount passes feedbackd's log through to w and counts its warnings and
// errors by message, across restarts, so that the report says whether
// feedbackd complained during the run (a "dependency down" on a starved
// machine, say) without anyone reading the log.
type logCount struct {
	w io.Writer

	mu      sync.Mutex
	partial []byte         // an unfinished line
	counts  map[logKey]int // lines
	others  int            // distinct OTHER messages counted, up to maxOthers
}

// maxOthers bounds the distinct lines that are not JSON listed.
const maxOthers = 20

// firstRunes is at most n bytes of b, cut at a character's start.
func firstRunes(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n])
}

// logKey is a level (ERROR, WARN, OTHER) and a message.
type logKey struct{ level, msg string }

func newLogCount(w io.Writer) *logCount { return &logCount{w: w, counts: map[logKey]int{}} }

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

// count counts a line if it is a warning or an error, or is not one of
// feedbackd's JSON log lines at all (a panic's trace, say: its first
// line is counted, as "OTHER", the rest of it too).
func (l *logCount) count(line []byte) {
	var rec struct{ Level, Msg string }
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if json.Unmarshal(line, &rec) != nil {
		k := logKey{"OTHER", "a line that is not JSON: " + firstRunes(line, 80)}
		if _, ok := l.counts[k]; !ok && l.others >= maxOthers {
			k = logKey{"OTHER", "more lines that are not JSON"} // a panic's thousands of goroutines
		} else if !ok {
			l.others++
		}
		l.counts[k]++
		return
	}
	if rec.Level != "WARN" && rec.Level != "ERROR" {
		return
	}
	for _, e := range expected {
		if strings.HasPrefix(rec.Msg, e) {
			return
		}
	}
	l.counts[logKey{rec.Level, rec.Msg}]++
}

// summary is one line per message, errors first, then warnings, then
// other lines, each most frequent first: "3 x ERROR: dependency down: ...".
// Empty when there was none.
func (l *logCount) summary() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := slices.Collect(maps.Keys(l.counts))
	rank := map[string]int{"ERROR": 0, "WARN": 1}
	slices.SortFunc(keys, func(a, b logKey) int {
		ra, oka := rank[a.level]
		rb, okb := rank[b.level]
		if !oka {
			ra = 2
		}
		if !okb {
			rb = 2
		}
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(l.counts[b], l.counts[a]), strings.Compare(a.msg, b.msg))
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d x %s: %s", l.counts[k], k.level, k.msg))
	}
	return out
}
