package main

import "testing"

// TestSteadyWindow: only intervals between two good samples in the
// window with no dial between them count, and the first counted one is
// reported once, even when it holds no delivery.
func TestSteadyWindow(t *testing.T) {
	type sample struct {
		count      int64
		cpu, dials float64
		ok         bool
	}
	for _, tc := range []struct {
		name       string
		samples    []sample
		cpu        float64
		deliveries int64
		firsts     []int // the samples add reported first at
	}{
		{"before and after the window", []sample{{50, 1, 100, true}, {99, 2, 100, true}, {950, 9, 120, true}, {1000, 10, 120, true}}, 0, 0, nil},
		{"in the window", []sample{{100, 1, 100, true}, {300, 2, 100, true}, {500, 3.5, 100, true}}, 2.5, 400, []int{1}},
		{"an interval with a dial", []sample{{100, 1, 100, true}, {300, 2, 101, true}, {500, 3.5, 101, true}}, 1.5, 200, []int{2}},
		{"a failed sample drops both intervals around it", []sample{{100, 1, 100, true}, {300, 2, 0, false}, {500, 3, 100, true}, {700, 4, 100, true}}, 1, 200, []int{3}},
		{"failed samples in a row count nothing", []sample{{100, 1, 0, false}, {300, 2, 0, false}, {500, 3, 0, false}}, 0, 0, nil},
		{"a first interval without deliveries is reported once", []sample{{100, 1, 100, true}, {100, 1.1, 100, true}, {300, 2, 100, true}}, 1, 200, []int{1}},
		{"out of the window and back", []sample{{100, 1, 100, true}, {200, 2, 100, true}, {950, 3, 100, true}, {850, 4, 100, true}, {900, 5, 100, true}}, 2, 150, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := steadyWindow{slots: 100, want: 1000}
			var firsts []int
			for i, s := range tc.samples {
				if w.add(s.count, s.cpu, s.dials, s.ok) {
					firsts = append(firsts, i)
				}
			}
			if w.cpu != tc.cpu || w.deliveries != tc.deliveries {
				t.Errorf("window %.2f CPU s over %d deliveries, want %.2f over %d", w.cpu, w.deliveries, tc.cpu, tc.deliveries)
			}
			if len(firsts) != len(tc.firsts) || len(firsts) > 0 && firsts[0] != tc.firsts[0] {
				t.Errorf("first reported at samples %v, want %v", firsts, tc.firsts)
			}
		})
	}
}
