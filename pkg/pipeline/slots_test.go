package pipeline

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Goroutines that finish while maxIdle others wait for a function end.
func TestGoroutinesKeepAtMostMaxIdle(t *testing.T) {
	g := &goroutines{next: make(chan func()), stop: make(chan struct{}), maxIdle: 3}
	defer g.close()
	base := runtime.NumGoroutine()
	var running, finished sync.WaitGroup
	release := make(chan struct{})
	for range 20 {
		running.Add(1)
		finished.Add(1)
		g.goFunc(func() { running.Done(); <-release; finished.Done() })
	}
	running.Wait()
	if n := runtime.NumGoroutine() - base; n < 20 {
		t.Fatalf("%d goroutines for 20 functions running at once", n)
	}
	close(release)
	finished.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine()-base > 3 || g.idle.Load() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left, %d idle; want 3 idle", runtime.NumGoroutine()-base, g.idle.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
