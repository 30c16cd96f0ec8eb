//go:build unix

package daemon

import (
	"math"
	"syscall"
)

// openFileLimit is the process's open-file limit (RLIMIT_NOFILE, which Go
// raises to the hard limit at start), or 0 if it cannot be read or is
// unlimited.
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > math.MaxInt32 {
		return 0
	}
	return r.Cur
}
