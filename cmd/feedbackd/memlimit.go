package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Go's garbage collector lets the heap grow to about twice the live data
// unless a soft memory limit (GOMEMLIMIT) makes it collect sooner as the
// process nears it. In a container that means the OOM killer, not the
// collector, often has the last word, so feedbackd gives Go a limit a
// little under the container's when GOMEMLIMIT is not set (README
// "Scaling out"). GOMEMLIMIT, set to a size or to "off", always wins.

// memoryLimitShare is the part of the container's memory limit given to
// Go: the rest is for what Go does not count (the binary, thread stacks)
// and for bursts the collector answers a moment late.
const memoryLimitShare = 0.9

// cgroupMemoryFiles say the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit is the soft memory limit to set, in bytes, and the limit it
// comes from (from: the file that says it), or 0 when there is none to set:
// GOMEMLIMIT is set, no file says a limit, or the limit is "max" (none).
// A file that cannot be read or parsed is an error naming it.
func memoryLimit(getenv func(string) string, files []string) (soft, container int64, from string, err error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, 0, "", nil
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, f, fmt.Errorf("container memory limit: %w", err)
		}
		limit, err := parseCgroupLimit(string(b))
		if err != nil {
			return 0, 0, f, fmt.Errorf("container memory limit in %s: %w", f, err)
		}
		if limit == 0 {
			return 0, 0, f, nil
		}
		return int64(float64(limit) * memoryLimitShare), limit, f, nil
	}
	return 0, 0, "", nil
}

// unlimitedV1 is where cgroup v1 says "no limit" (PAGE_COUNTER_MAX pages,
// 9223372036854771712 on 4 KiB pages): anything this large is none.
const unlimitedV1 = 1 << 62

// parseCgroupLimit parses a cgroup memory limit file: a byte count, or
// "max" (v2: no limit), returned as 0 like v1's huge "no limit".
func parseCgroupLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case err != nil:
		return 0, fmt.Errorf("not a byte count or \"max\": %q", s)
	case n >= unlimitedV1:
		return 0, nil
	case n == 0:
		return 0, errors.New("a limit of 0 bytes")
	}
	return int64(n), nil
}
