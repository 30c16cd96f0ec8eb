package offsets

import (
	"context"
	"math/rand/v2"
	"slices"
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

// The client rewinds within an assignment (franz-go resetting a partition
// after the broker reported lost records) while records of the first read
// are still in flight: the tracker must not stall, must not commit past a
// re-read record that is not settled, and must count every record read
// before as a possible re-read.
func TestRewind(t *testing.T) {
	tr := NewTracker()
	tr.Assign(map[string][]int32{"t": {0}})
	first := tr.Get("t", 0)
	first.Fetched(8) // 8 records existed at the first fetch
	for o := int64(0); o < 10; o++ {
		if p, retired := tr.Add("t", 0, o, 0); p != first || retired != nil {
			t.Fatalf("record %d: tracked on %p (retired %p), want %p", o, p, retired, first)
		}
	}
	for o := int64(0); o < 5; o++ {
		first.Settle(o)
	}
	if got, _ := commitPoint(t, first); got != 5 {
		t.Fatalf("commit point %d before the rewind, want 5", got)
	}

	// The client reads from 3 again; 5..9 are still in flight.
	second, retired := tr.Add("t", 0, 3, 1)
	if retired != first || second == first || second == nil || tr.Get("t", 0) != second {
		t.Fatalf("the rewind did not retire the partition: got %p retired %p, first %p", second, retired, first)
	}
	if !first.Closed() || first.Add(10, 1) {
		t.Fatal("a retired partition still takes records")
	}
	if c := Committable(tr.All()); len(c) != 0 {
		t.Fatalf("committable %v before a re-read record settled: the commit point must start again from the rewind", c)
	}
	for o := int64(4); o < 12; o++ {
		if p, r := tr.Add("t", 0, o, 1); p != second || r != nil {
			t.Fatalf("record %d after the rewind: tracked on %p (retired %p), want %p", o, p, r, second)
		}
	}
	for _, c := range []struct {
		offset int64
		want   bool
	}{{0, true}, {3, true}, {9, true}, {10, false}, {11, false}} {
		if got := second.MayBeReread(c.offset); got != c.want {
			t.Errorf("after the rewind MayBeReread(%d) = %v, want %v", c.offset, got, c.want)
		}
	}

	// A revoke now drains the first read's records in flight too, and
	// commits only the successor's point.
	revoked := tr.Revoke(map[string][]int32{"t": {0}})
	if len(revoked) != 2 || revoked[0] != second || revoked[1] != first {
		t.Fatalf("revoked %v, want the successor and the retired partition with records in flight", revoked)
	}
	for o := int64(5); o < 10; o++ {
		first.Settle(o) // the first read finishing
	}
	for _, o := range []int64{3, 4, 5, 7} {
		second.Settle(o)
	}
	c := Committable(revoked)
	if eo := c["t"][0]; len(c) != 1 || eo.Offset != 6 || eo.Epoch != 1 {
		t.Fatalf("committable %v, want t/0 at 6 (epoch 1): the retired partition's point is not used, and 6 is not settled since the rewind", c)
	}
	for o := int64(6); o < 12; o++ {
		second.Settle(o)
	}
	for _, p := range revoked {
		if err := p.Wait(context.Background()); err != nil || p.Unsettled() != 0 {
			t.Fatalf("%p: %v, %d unsettled", p, err, p.Unsettled())
		}
	}
	if got, _ := commitPoint(t, second); got != 12 {
		t.Fatalf("commit point %d after everything settled, want 12", got)
	}
}

// Predecessors are kept only while they have records in flight, however
// many times the client rewinds.
func TestRewindChain(t *testing.T) {
	tr := NewTracker()
	tr.Assign(map[string][]int32{"t": {0}})
	var parts []*Partition
	for round := range 4 {
		for o := int64(0); o < 3; o++ {
			p, _ := tr.Add("t", 0, o, int32(round))
			if o == 0 {
				parts = append(parts, p)
			}
		}
	}
	if len(parts) != 4 {
		t.Fatalf("%d partitions after 3 rewinds", len(parts))
	}
	for o := int64(0); o < 3; o++ {
		parts[1].Settle(o) // the second read finished; the others did not
	}
	current, _ := tr.Add("t", 0, 0, 4) // a fourth rewind
	revoked := tr.Revoke(map[string][]int32{"t": {0}})
	want := []*Partition{current, parts[3], parts[2], parts[0]}
	if !slices.Equal(revoked, want) {
		t.Fatalf("revoked %v, want %v", revoked, want)
	}
}

// A rewind that does not go back past every record in flight (a reset to
// the end of a truncated epoch, say) must not let the successor commit
// past the predecessor's records below the rewind: they are not read
// again, so committing past them before they settle could lose them.
func TestRewindNeverCommitsPastAPredecessorsRecord(t *testing.T) {
	tr := NewTracker()
	tr.Assign(map[string][]int32{"t": {0}})
	first := tr.Get("t", 0)
	for o := int64(0); o < 10; o++ {
		tr.Add("t", 0, o, 0)
	}
	for o := int64(0); o < 5; o++ {
		first.Settle(o)
	}
	second, _ := tr.Add("t", 0, 7, 1) // 5 and 6 in flight, not read again
	for o := int64(8); o < 12; o++ {
		tr.Add("t", 0, o, 1)
	}
	for o := int64(7); o < 12; o++ {
		second.Settle(o)
	}
	if eo := Committable(tr.All())["t"][0]; eo.Offset != 5 {
		t.Fatalf("committable at %d while 5 and 6 are in flight, want 5", eo.Offset)
	}
	first.Settle(5)
	if eo := Committable(tr.All())["t"][0]; eo.Offset != 6 {
		t.Fatalf("committable at %d while 6 is in flight, want 6", eo.Offset)
	}
	first.Settle(6)
	if eo := Committable(tr.All())["t"][0]; eo.Offset != 12 {
		t.Fatalf("committable at %d once all settled, want 12", eo.Offset)
	}
	// An abandoned one holds the point back for good: its next owner reads it.
	first2 := NewTracker()
	first2.Assign(map[string][]int32{"t": {0}})
	a := first2.Get("t", 0)
	for o := int64(0); o < 4; o++ {
		first2.Add("t", 0, o, 0)
	}
	a.Abandon(1)
	a.Settle(0)
	a.Settle(2)
	a.Settle(3)
	b, _ := first2.Add("t", 0, 3, 1)
	b.Settle(3)
	if eo := Committable(first2.All())["t"][0]; eo.Offset != 1 {
		t.Fatalf("committable at %d past an abandoned record below the rewind, want 1", eo.Offset)
	}
}
