package offsets

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func commitPoint(t *testing.T, p *Partition) (int64, bool) {
	t.Helper()
	c := Committable([]*Partition{p})
	eo, ok := c[p.Topic][p.ID]
	return eo.Offset, ok
}

func TestCommitPointIsContiguous(t *testing.T) {
	p := &Partition{Topic: "t", ID: 0}
	for _, o := range []int64{10, 11, 13, 14} { // 12 is a gap (compacted away)
		p.Add(o, 1)
	}
	steps := []struct {
		settle int64
		want   int64
		moved  bool // anything committable yet
	}{
		{11, 0, false}, // 10 still in flight
		{14, 0, false},
		{10, 12, true}, // 10 and 11 done: commit 12
		{13, 15, true}, // the gap does not hold the commit point back
	}
	for _, s := range steps {
		p.Settle(s.settle)
		got, moved := commitPoint(t, p)
		if moved != s.moved || (moved && got != s.want) {
			t.Fatalf("after settling %d: commit %d moved %v, want %d %v", s.settle, got, moved, s.want, s.moved)
		}
	}
}

func TestAbandonedBlocksCommitButNotWait(t *testing.T) {
	p := &Partition{Topic: "t", ID: 0}
	p.Add(1, 0)
	p.Add(2, 0)
	p.Add(3, 0)
	p.Settle(1)
	p.Abandon(2)
	p.Settle(3)
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := commitPoint(t, p); got != 2 {
		t.Fatalf("commit point %d, want 2 (the abandoned record is left for the next owner)", got)
	}
}

func TestWaitAndRevoke(t *testing.T) {
	tr := NewTracker()
	tr.Assign(map[string][]int32{"t": {0, 1}})
	p := tr.Get("t", 0)
	p.Add(5, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); err == nil {
		t.Fatal("Wait returned with a record in flight")
	}
	revoked := tr.Revoke(map[string][]int32{"t": {0}})
	if len(revoked) != 1 || tr.Get("t", 0) != nil || tr.Get("t", 1) == nil {
		t.Fatal("Revoke did not move exactly partition 0 out")
	}
	if p.Add(6, 0) {
		t.Fatal("Add succeeded on a revoked partition")
	}
	go p.Settle(5) // in-flight work finishing after the revoke still counts
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := commitPoint(t, p); got != 6 {
		t.Fatalf("commit point %d, want 6", got)
	}
}

// Property: settling in random order from many goroutines ends with the
// commit point past the last record.
func TestConcurrentSettle(t *testing.T) {
	p := &Partition{Topic: "t", ID: 0}
	const n = 10000
	for i := int64(0); i < n; i++ {
		p.Add(i*2, 0)
	}
	order := rand.Perm(n)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				p.Settle(int64(order[i]) * 2)
			}
		})
	}
	wg.Wait()
	if got, _ := commitPoint(t, p); got != (n-1)*2+1 {
		t.Fatalf("commit point %d", got)
	}
	if p.Unsettled() != 0 {
		t.Fatal("records left unsettled")
	}
}

func BenchmarkAddSettle(b *testing.B) {
	p := &Partition{Topic: "t", ID: 0}
	const window = 256 // records in flight at once
	b.ReportAllocs()
	var off int64
	for i := 0; i < window; i++ {
		p.Add(off, 0)
		off++
	}
	for b.Loop() {
		p.Add(off, 0)
		p.Settle(off - window)
		off++
	}
	_ = Committable([]*Partition{p})
}

func TestMayBeReread(t *testing.T) {
	p := &Partition{Topic: "t", ID: 0}
	if !p.MayBeReread(1 << 40) {
		t.Fatal("before the first fetch every record may be a re-read")
	}
	p.Fetched(-1) // unknown watermark: still unknown
	if !p.MayBeReread(1 << 40) {
		t.Fatal("an unknown watermark bounded re-reads")
	}
	p.Fetched(100)
	p.Fetched(200) // only the first fetch of the assignment counts
	for _, c := range []struct {
		offset int64
		want   bool
	}{{0, true}, {99, true}, {100, false}, {150, false}, {250, false}} {
		if got := p.MayBeReread(c.offset); got != c.want {
			t.Errorf("MayBeReread(%d) = %v, want %v", c.offset, got, c.want)
		}
	}
}
