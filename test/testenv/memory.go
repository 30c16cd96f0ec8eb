package testenv

import "runtime"

// LiveBytes is the live heap and the goroutine stacks in use, after a
// collection: what a benchmark compares before and after it holds
// something, to report memory per thing held.
func LiveBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}
