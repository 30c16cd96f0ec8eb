//go:build linux || darwin

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises this process's open-file limit (RLIMIT_NOFILE):
// the soft limit to the hard one, and both to need when need is above the
// hard limit and the process may raise it (CAP_SYS_RESOURCE). Having called
// Setrlimit, the processes it starts inherit the raised limit (Go's os/exec
// restores the original one only when the program did not set it itself).
func raiseFileLimit(need, least uint64) fileLimit {
	l := fileLimit{Need: need, Least: least}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		l.Err = fmt.Sprintf("getrlimit: %v", err)
		return l
	}
	raised := need > r.Max && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: need, Max: need}) == nil
	if !raised {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: r.Max, Max: r.Max}); err != nil {
			l.Err = fmt.Sprintf("setrlimit: %v", err)
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil {
		l.Soft, l.Hard = r.Cur, r.Max
	}
	return l
}
