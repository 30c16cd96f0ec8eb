package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/admission"
	"github.com/feedbackd/feedbackd/pkg/offsets"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// A job that waited for a busy endpoint without its slot, once handed the
// endpoint's place, goes on even if every slot is taken: the slots may be
// held by jobs waiting, with them, for the very place it holds (with a
// single busy tenant feedbackbench once stalled so for good).
func TestHandedPlaceGoesOnWithoutAFreeSlot(t *testing.T) {
	ctrl := admission.New(testenv.StartRedis(t).Client, admission.Options{Limit: 1})
	p, err := New([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, nil, nil, Options{Group: "test", Concurrency: 2, MaxParked: 2, Admission: ctrl})
	if err != nil {
		t.Fatal(err)
	}
	defer p.cl.Close()
	const ep = "https://busy.example/hook"
	inFlight := ctrl.Admit(context.Background(), ep)
	if inFlight.Answer != admission.Go {
		t.Fatalf("first attempt: answer %v, want Go", inFlight.Answer)
	}

	s := p.slots.acquire(context.Background()) // the job's slot
	type result struct {
		d  admission.Decision
		ok bool
	}
	got := make(chan result, 1)
	go func() {
		d, ok := p.admit(context.Background(), &job{rec: &kgo.Record{}, part: &offsets.Partition{Topic: "feedback.email"}}, s, ep)
		got <- result{d, ok}
	}()
	testenv.Eventually(t, "the job parked", 5*time.Second, func() bool { return p.parking.len() == 1 })
	for range cap(p.slots.delivery) { // jobs waiting for ep with their slots
		p.slots.acquire(context.Background())
	}
	inFlight.Release() // the place goes to the parked job, first in line

	select {
	case r := <-got:
		if !r.ok || r.d.Answer != admission.Go {
			t.Fatalf("admit = %v, %v; want Go, true", r.d.Answer, r.ok)
		}
		if s.delivery {
			t.Error("the job holds a slot, but none was free")
		}
		r.d.Release()
	case <-time.After(10 * time.Second):
		t.Fatal("the job handed the place waits for a slot held by jobs waiting for that place")
	}
}
