package testenv

import (
	"runtime"
	"syscall"
	"time"
)

// LiveBytes is the live heap and the goroutine stacks in use, after a
// collection: what a benchmark compares before and after it holds
// something, to report memory per thing held.
func LiveBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// StackBytes is the goroutine stacks in use, after a collection (which
// shrinks the stacks that use a quarter of their size or less): the part
// of LiveBytes that goroutines hold.
func StackBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.StackInuse)
}

// ProcessCPU is the CPU time this process has used so far (user and
// system, all threads): benchmarks report it per operation, which a shared
// machine's drift changes less than wall-clock time.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
